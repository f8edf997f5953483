"""Reading token logprobs (OpenAI-style ``[{"token", "logprob", "top_logprobs"}, ...]``):
the expected value of a stated score, and the confidence of a whole reply."""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

UNKNOWN_FRACTION = 0.5  # mean of 0.d when the logprobs do not show the digit after "0."
TAIL_SHARE = 0.1  # the lowest window covers this share of the reply's tokens
MIN_WINDOW = 4
_LIST_MARKER = re.compile(r"(?m)^[ \t]*\d+[.)](?=\s)")


def logprob_content(pred: Any) -> list[dict] | None:
    """A prediction's OpenAI-style ``logprobs.content`` entries (one per chosen token), or
    None when it carries none."""
    logprobs = getattr(pred, "logprobs", None)
    if hasattr(logprobs, "model_dump"):
        logprobs = logprobs.model_dump()
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return content or None


def _alternatives(entry: dict) -> dict[str, float]:
    """Probabilities of the numeric alternatives at one token position, renormalized."""
    options = {alt["token"]: alt["logprob"] for alt in entry.get("top_logprobs") or []}
    options.setdefault(entry["token"], entry["logprob"])
    numeric = {
        t.strip(): math.exp(lp) for t, lp in options.items() if _number(t.strip()) is not None
    }
    total = sum(numeric.values())
    return {t: p / total for t, p in numeric.items()} if total > 0 else {}


def _number(text: str) -> float | None:
    if not text or not (text[0].isdigit() or (text[0] == "." and text[1:2].isdigit())):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def expected_scores(content: list[dict], start_char: int = 0) -> list[float]:
    """Expected value of each number in [0, 1] the model wrote, from OpenAI-style token
    logprobs (``[{"token", "logprob", "top_logprobs": [...]}, ...]``).

    A number starts at a token that begins with a digit; when it is written as ``0`` ``.``
    ``d`` the distribution at the ``d`` position gives E[0.d], and the lead position weighs
    that against the alternatives ``1`` (or other whole numbers, clamped to 1). Only tokens
    at or after ``start_char`` of the completion are read, and the numbers of a numbered
    list (``1.``, ``2)`` at a line start) are skipped."""
    scores: list[float] = []
    offset, i = 0, 0
    offsets = []
    for entry in content:
        offsets.append(offset)
        offset += len(entry["token"])
    text = "".join(entry["token"] for entry in content)
    markers = [m.span() for m in _LIST_MARKER.finditer(text)]
    while i < len(content):
        token = content[i]["token"].strip()
        at = offsets[i] + len(content[i]["token"]) - len(content[i]["token"].lstrip())
        in_marker = any(start <= at < end for start, end in markers)
        if offsets[i] < start_char or _number(token) is None or in_marker:
            i += 1
            continue
        lead = _alternatives(content[i])
        fraction = UNKNOWN_FRACTION
        j = i + 1
        if token == "0" and j + 1 < len(content) and content[j]["token"] == ".":
            digits = _alternatives(content[j + 1])
            if digits:
                fraction = sum(
                    p * float("0." + t.lstrip("."))
                    for t, p in digits.items()
                    if t.lstrip(".").isdigit()
                )
            j += 2
        elif "." in token and _number(token) is not None and float(token) < 1:
            fraction = float(token)
        expected = (
            sum(
                p * (fraction if _number(t) is not None and float(t) < 1 else 1.0)
                for t, p in lead.items()
            )
            if lead
            else fraction
        )
        scores.append(min(1.0, max(0.0, expected)))
        while j < len(content) and (
            content[j]["token"].strip().isdigit() or content[j]["token"] == "."
        ):
            j += 1
        i = j
    return scores


class TraceConfidence(NamedTuple):
    """How sure the model was of a reply, from the logprobs of the tokens it chose."""

    mean: float  # the mean logprob
    lowest: float  # the lowest mean over a window (DeepConf's lowest-group confidence)
    total: float  # the sum: the reply's log-probability


def trace_confidence(tokens: list[tuple[str, float]]) -> TraceConfidence | None:
    """The confidence of a reply given as its ``(token, logprob)`` pairs; the window covers
    ``TAIL_SHARE`` of its tokens (at least ``MIN_WINDOW``). None for an empty trace."""
    values = [max(float(lp), -100.0) for _, lp in tokens if lp is not None and not math.isnan(lp)]
    if not values:
        return None
    window = min(len(values), max(MIN_WINDOW, math.ceil(TAIL_SHARE * len(values))))
    running = sum(values[:window])
    lowest = running
    for i in range(window, len(values)):
        running += values[i] - values[i - window]
        lowest = min(lowest, running)
    return TraceConfidence(sum(values) / len(values), lowest / window, sum(values))


TOTAL_TOKENS = 100  # ``doubt(..., "total")`` is per this many tokens


def doubt(tokens: list[tuple[str, float]], over: str) -> float | None:
    """1 - a reply's probability ``over`` its tokens: ``lowest``, the geometric mean over its
    least confident window; ``mean``, over the whole reply; ``total``, the whole reply's
    probability per ``TOTAL_TOKENS`` tokens (so a long reply weighs its doubts in full).
    None when the reply carries no logprobs."""
    found = trace_confidence(tokens)
    if found is None:
        return None
    logprob = {"lowest": found.lowest, "mean": found.mean, "total": found.total / TOTAL_TOKENS}
    return 1.0 - math.exp(logprob[over])
