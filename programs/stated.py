"""The stated-difficulty estimators (``self``, ``logprob``): the model states a number for
each step, read as it was stated or as its expected value under the token distribution."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from scale.models.lm import label
from scale.programs.evidence import Estimator, Evidence
from scale.programs.logprobs import expected_scores, logprob_content
from scale.programs.profiles import SystemProfile
from scale.programs.records import Fallback, Rating, Step
from scale.signatures import AssessDifficulties, AssessDifficulty


def clamp_score(value: Any) -> Rating:
    """A rating from a stated score: clamped into [0, 1]; missing or NaN -> None (hard)."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        return Rating(
            None,
            notes=[f"difficulty {value!r} unusable: treated as hard"],
            fallbacks=[Fallback.DIFFICULTY_UNUSABLE],
        )
    if math.isnan(score):
        return Rating(
            None,
            notes=["difficulty NaN: treated as hard"],
            fallbacks=[Fallback.DIFFICULTY_UNUSABLE],
        )
    if not 0.0 <= score <= 1.0:
        return Rating(
            min(1.0, max(0.0, score)),
            notes=[f"difficulty {score} clamped"],
            fallbacks=[Fallback.DIFFICULTY_CLAMPED],
        )
    return Rating(score)


class Assessor(dspy.Module):
    """The predictors the model states difficulties with: one step per call, or all steps
    in one call (``batched``)."""

    def __init__(self, profile: SystemProfile, batched: bool = True, top_logprobs: int = 10):
        super().__init__()
        self.profile = profile
        self.batched = batched
        self.top_logprobs = top_logprobs
        self.assess = dspy.Predict(AssessDifficulty)
        self.assess_all = dspy.Predict(AssessDifficulties)

    def config(self, logprobs: bool) -> dict:
        return {"logprobs": True, "top_logprobs": self.top_logprobs} if logprobs else {}


class Stated(Estimator):
    """``self``: the stated score; ``logprob``: its expected value from token logprobs
    (the stated score, with a note, where the backend returns none)."""

    online = False

    def __init__(self, assessor: Assessor, *, logprobs: bool):
        self.assessor = assessor
        self.use_logprobs = logprobs
        self.name = "logprob" if logprobs else "self"

    def rate(self, evidence: Evidence) -> Rating:
        assessor = self.assessor
        try:
            with assessor.profile.context(), label("assess", None, evidence.step):
                pred = assessor.assess(
                    problem=evidence.problem,
                    earlier_steps=evidence.earlier,
                    subproblem=evidence.subproblem,
                    config=assessor.config(self.use_logprobs),
                )
        except (AdapterParseError, ValueError) as exc:
            return Rating(
                None,
                notes=[f"difficulty unparseable ({type(exc).__name__}): treated as hard"],
                fallbacks=[Fallback.DIFFICULTY_UNUSABLE],
            )
        if self.use_logprobs:
            scores = _expected(pred)
            if scores:
                return Rating(scores[0])
            rating = clamp_score(pred.difficulty)
            rating.notes.append("no logprobs from this backend: stated score used")
            rating.fallbacks.append(Fallback.NO_LOGPROBS)
            return rating
        return clamp_score(pred.difficulty)

    def plan(self, problem: str, subproblems: list[str], evidence: Callable) -> list[Rating]:
        if not self.assessor.batched:
            return [
                self.rate(evidence(i, [Step(s) for s in subproblems[:i]]))
                for i, s in enumerate(subproblems)
            ]
        assessor = self.assessor
        try:
            with assessor.profile.context(), label("assess"):
                pred = assessor.assess_all(
                    problem=problem,
                    subproblems=subproblems,
                    config=assessor.config(self.use_logprobs),
                )
        except (AdapterParseError, ValueError) as exc:
            note = f"difficulties unparseable ({type(exc).__name__}): treated as hard"
            return [
                Rating(None, notes=[note], fallbacks=[Fallback.DIFFICULTY_UNUSABLE])
                for _ in subproblems
            ]
        return self._batch_ratings(pred, len(subproblems))

    def _batch_ratings(self, pred: dspy.Prediction, n: int) -> list[Rating]:
        if self.use_logprobs:
            scores = _expected(pred)
            if scores is not None and len(scores) == n:
                return [Rating(s) for s in scores]
        values = pred.difficulties if isinstance(pred.difficulties, list) else []
        ratings = [clamp_score(v) for v in values[:n]]
        ratings += [Rating(None) for _ in range(n - len(ratings))]
        notes, fallbacks = [], []
        if len(values) != n:
            extra = ": missing ones treated as hard" if len(values) < n else ": extra ones ignored"
            notes.append(f"{len(values)} difficulties for {n} steps{extra}")
            fallbacks.append(Fallback.DIFFICULTY_COUNT)
        if self.use_logprobs:
            notes.append("logprobs unusable for this output: stated scores used")
            fallbacks.append(Fallback.NO_LOGPROBS)
        for rating in ratings:
            rating.notes.extend(notes)
            rating.fallbacks.extend(fallbacks)
        return ratings


def _expected(pred: dspy.Prediction) -> list[float] | None:
    """Expected scores from the prediction's token logprobs, or None if it has none."""
    content = logprob_content(pred)
    if not content:
        return None
    text = "".join(entry["token"] for entry in content)
    anchor = text.find("difficult")
    return expected_scores(content, anchor + len("difficult") if anchor >= 0 else 0)
