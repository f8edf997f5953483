"""The adapter the programs parse model replies with: DSPy's ChatAdapter, made tolerant of
what small models write, and cheaper when a reply runs into max_tokens."""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
from collections.abc import Iterator
from typing import Any

import dspy
from dspy.adapters.chat_adapter import field_header_pattern
from dspy.utils.exceptions import AdapterParseError

from scale.verify import extract_answer

_cut_at_max_tokens: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "cut_at_max_tokens", default=False
)
_final: contextvars.ContextVar[bool] = contextvars.ContextVar("final_answer", default=False)
_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+(.*\S)\s*$")
_ESCAPE = re.compile(r'\\\\|\\"|\\')  # JSON's escaped backslash or quote, or a lone one
_BACKSLASH = re.compile(r'\\(?!")')


def record_finish(response: Any) -> None:
    """Note whether ``response`` (the last reply in this context) stopped at max_tokens."""
    choices = getattr(response, "choices", None) or []
    _cut_at_max_tokens.set(any(getattr(c, "finish_reason", None) == "length" for c in choices))


@contextlib.contextmanager
def final_answer(final: bool = True) -> Iterator[None]:
    """Marks the calls inside as giving the problem's final answer (or not, ``final=False``):
    a reply to them cut at max_tokens with no marked answer is asked for again as JSON."""
    token = _final.set(final)
    try:
        yield
    finally:
        _final.reset(token)


def parse_string_list(text: str) -> list[str] | None:
    """A list of strings as small models write it: a JSON list, also one whose LaTeX is not
    escaped (then every backslash is literal: ``\\theta`` stays ``\\theta``, not a tab and
    ``heta``), or a numbered or bulleted list, one item per line. None if neither."""
    text = text.strip()
    if text.startswith("["):
        if "\\" in _ESCAPE.findall(text):  # a lone backslash: LaTeX written as is
            text = _BACKSLASH.sub(r"\\\\", text)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None
    items = [_ITEM.match(line) for line in text.splitlines() if line.strip()]
    if items and all(items):
        return [m[1] for m in items]
    return None


class ChatAdapter(dspy.ChatAdapter):
    """DSPy's ChatAdapter with two changes. ``list[str]`` fields are read with
    ``parse_string_list`` first (DSPy's repair of non-JSON text keeps whatever follows the
    first brace, and turns ``\\begin`` into a backspace). A reply cut at max_tokens is
    asked for again as JSON only inside ``final_answer()`` and only if it holds no
    ``\\boxed{}`` or 'answer:' marker: on the MATH benchmark such re-asks saved some final
    answers, while on intermediate steps they mostly passed on one-token guesses
    (bench/results/README.md). Otherwise the ``AdapterParseError`` carries the cut reply,
    whose marked answer (if any) the solvers read."""

    def __call__(
        self,
        lm: dspy.BaseLM,
        lm_kwargs: dict[str, Any],
        signature: type[dspy.Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        _cut_at_max_tokens.set(False)
        try:  # the base adapter's call, without dspy.ChatAdapter's unconditional re-ask
            return dspy.Adapter.__call__(self, lm, lm_kwargs, signature, demos, inputs)
        except AdapterParseError as exc:
            if not self.use_json_adapter_fallback or not _worth_asking_again(exc.lm_response):
                raise
            return dspy.JSONAdapter()(lm, lm_kwargs, signature, demos, inputs)

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        sections = _sections(completion)
        changed = False
        for i, (name, text) in enumerate(sections):
            field = signature.output_fields.get(name or "")
            items = parse_string_list(text) if field and field.annotation == list[str] else None
            if items is not None:
                sections[i] = (name, json.dumps(items))
                changed = True
        if changed:
            completion = "\n\n".join(
                text if name is None else f"[[ ## {name} ## ]]\n{text}" for name, text in sections
            )
        return super().parse(signature, completion)


def _worth_asking_again(reply: Any) -> bool:
    """Whether to ask again in JSON after an unparseable ``reply``: yes, unless it was cut at
    max_tokens; a cut reply only if it gives the final answer and holds no marked answer."""
    if not _cut_at_max_tokens.get():
        return True
    return _final.get() and not extract_answer(str(reply or ""), marked_only=True)


def _sections(completion: str) -> list[tuple[str | None, str]]:
    """``completion`` split at its ``[[ ## name ## ]]`` headers, as DSPy's parser splits it:
    (None, preamble), then (name, text under the header) in order."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in completion.splitlines():
        match = field_header_pattern.match(line.strip())
        if match:
            rest = line.strip()[match.end() :].strip()
            sections.append((match[1], [rest] if rest else []))
        else:
            sections[-1][1].append(line)
    return [(name, "\n".join(lines).strip()) for name, lines in sections]
