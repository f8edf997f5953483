"""Stage 2: difficulty estimators, each giving every step a score in [0, 1].

- ``self``: the model states a number (the paper), per step or all steps in one call;
- ``logprob``: the same question, scored as the probability-weighted mean of the numbers the
  model could have written, read from token logprobs (falls back to ``self`` with a note when
  the backend returns none);
- ``consistency``: System 1 answers the step n times at temperature > 0; the difficulty is
  1 - the share of the majority answer, and that majority answer is kept if the step stays
  on System 1.
"""

from __future__ import annotations

import math
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError
from scale.programs.profiles import SystemProfile
from scale.programs.records import Rating, Step, format_steps
from scale.programs.solve import Solver, majority
from scale.signatures import AssessDifficulties, AssessDifficulty

from scale.lm import label

UNKNOWN_FRACTION = 0.5  # mean of 0.d when the logprobs do not show the digit after "0."


def clamp_score(value: Any) -> Rating:
    """A rating from a stated score: clamped into [0, 1]; missing or NaN -> None (hard)."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        return Rating(None, notes=[f"difficulty {value!r} unusable: treated as hard"])
    if math.isnan(score):
        return Rating(None, notes=["difficulty NaN: treated as hard"])
    if not 0.0 <= score <= 1.0:
        return Rating(min(1.0, max(0.0, score)), notes=[f"difficulty {score} clamped"])
    return Rating(score)


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
    at or after ``start_char`` of the completion are read."""
    scores: list[float] = []
    offset, i = 0, 0
    offsets = []
    for entry in content:
        offsets.append(offset)
        offset += len(entry["token"])
    while i < len(content):
        token = content[i]["token"].strip()
        if offsets[i] < start_char or _number(token) is None:
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


class SelfEstimator(dspy.Module):
    """The model rates each step (one call per step, or all steps in one call).

    With ``logprobs=True`` (the ``logprob`` estimator) each score is the expected value of
    the stated number under the model's token distribution (``top_logprobs`` alternatives);
    backends without logprobs fall back to the stated number, with a note."""

    def __init__(self, profile: SystemProfile, batched: bool = True, top_logprobs: int = 10):
        super().__init__()
        self.profile = profile
        self.batched = batched
        self.top_logprobs = top_logprobs
        self.assess = dspy.Predict(AssessDifficulty)
        self.assess_all = dspy.Predict(AssessDifficulties)

    def plan(self, problem: str, subproblems: list[str], *, logprobs: bool = False) -> list[Rating]:
        """Ratings of all steps before any is solved (earlier steps without answers)."""
        if not self.batched:
            steps = [Step(s) for s in subproblems]
            return [
                self.rate(problem, format_steps(steps[:i]), s.subproblem, i, logprobs=logprobs)
                for i, s in enumerate(steps)
            ]
        try:
            with self.profile.context(), label("assess"):
                pred = self.assess_all(
                    problem=problem, subproblems=subproblems, config=self._config(logprobs)
                )
        except (AdapterParseError, ValueError) as exc:
            note = f"difficulties unparseable ({type(exc).__name__}): treated as hard"
            return [Rating(None, notes=[note]) for _ in subproblems]
        return self._batch_ratings(pred, len(subproblems), logprobs)

    def rate(
        self,
        problem: str,
        earlier: str,
        subproblem: str,
        step: int | None = None,
        *,
        logprobs: bool = False,
    ) -> Rating:
        """Rating of one step (also used for the whole problem by the decomposition gate)."""
        try:
            with self.profile.context(), label("assess", None, step):
                pred = self.assess(
                    problem=problem,
                    earlier_steps=earlier,
                    subproblem=subproblem,
                    config=self._config(logprobs),
                )
        except (AdapterParseError, ValueError) as exc:
            return Rating(
                None, notes=[f"difficulty unparseable ({type(exc).__name__}): treated as hard"]
            )
        if logprobs:
            scores = _expected(pred)
            if scores:
                return Rating(scores[0])
            rating = clamp_score(pred.difficulty)
            rating.notes.append("no logprobs from this backend: stated score used")
            return rating
        return clamp_score(pred.difficulty)

    def _config(self, logprobs: bool) -> dict:
        return {"logprobs": True, "top_logprobs": self.top_logprobs} if logprobs else {}

    def _batch_ratings(self, pred: dspy.Prediction, n: int, logprobs: bool) -> list[Rating]:
        if logprobs:
            scores = _expected(pred)
            if scores is not None and len(scores) == n:
                return [Rating(s) for s in scores]
        values = pred.difficulties if isinstance(pred.difficulties, list) else []
        ratings = [clamp_score(v) for v in values[:n]]
        ratings += [Rating(None) for _ in range(n - len(ratings))]
        notes = []
        if len(values) != n:
            extra = ": missing ones treated as hard" if len(values) < n else ": extra ones ignored"
            notes.append(f"{len(values)} difficulties for {n} steps{extra}")
        if logprobs:
            notes.append("logprobs unusable for this output: stated scores used")
        for rating in ratings:
            rating.notes.extend(notes)
        return ratings


def _expected(pred: dspy.Prediction) -> list[float] | None:
    """Expected scores from the prediction's token logprobs, or None if it has none."""
    logprobs = getattr(pred, "logprobs", None)
    if hasattr(logprobs, "model_dump"):
        logprobs = logprobs.model_dump()
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content:
        return None
    text = "".join(entry["token"] for entry in content)
    anchor = text.find("difficult")
    return expected_scores(content, anchor + len("difficult") if anchor >= 0 else 0)


class ConsistencyEstimator(dspy.Module):
    """System 1 answers the step ``n`` times at ``temperature``; difficulty = 1 - majority
    share. The majority answer rides along, so a step kept on System 1 is not solved again."""

    def __init__(self, solver: Solver, n: int = 3, temperature: float = 0.7):
        super().__init__()
        if n < 2:
            raise ValueError("the consistency estimator needs n >= 2 samples")
        self.solver = solver
        self.n = n
        self.temperature = temperature

    def rate(self, problem: str, earlier: str, subproblem: str, step: int | None = None) -> Rating:
        answers = self.solver.sample(
            self.n,
            self.temperature,
            step=step,
            stage="assess",
            problem=problem,
            earlier_steps=earlier,
            subproblem=subproblem,
        )
        answer, share = majority(answers)
        return Rating(round(1.0 - share, 6), answer=answer, notes=[f"System 1 samples: {answers}"])
