"""Stage 1: problem -> ordered sub-problems (optionally the best of k candidates)."""

from __future__ import annotations

import dspy
from dspy.utils.exceptions import AdapterParseError

from scale.models.lm import label
from scale.programs.profiles import SystemProfile
from scale.programs.records import Fallback
from scale.signatures import Decompose, SelectDecomposition


def _clean(subproblems: object) -> list[str]:
    if not isinstance(subproblems, list):
        return []
    return [s.strip() for s in subproblems if isinstance(s, str) and s.strip()]


class Decomposer(dspy.Module):
    """Splits a problem into sub-problems with System 1's model.

    ``k`` > 1 samples k candidates (temperature ``sample_temperature``) and asks the model to
    pick the best one. Output that cannot be parsed becomes a single step (the whole problem);
    more than ``max_subproblems`` steps keep the first ones and the last; the last step is
    always the original problem, so the final answer answers what was asked. Every fallback is
    recorded in ``notes``."""

    def __init__(
        self,
        profile: SystemProfile,
        k: int = 1,
        max_subproblems: int = 6,
        sample_temperature: float = 0.7,
    ):
        super().__init__()
        if k < 1 or max_subproblems < 1:
            raise ValueError("k and max_subproblems must be positive")
        self.profile = profile
        self.k = k
        self.max_subproblems = max_subproblems
        self.sample_temperature = sample_temperature
        self.decompose = dspy.Predict(Decompose)
        self.select = dspy.Predict(SelectDecomposition)

    def forward(self, problem: str) -> dspy.Prediction:
        notes: list[str] = []
        fallbacks: list[Fallback] = []
        with self.profile.context():
            candidates = [self._candidate(problem, i, notes, fallbacks) for i in range(self.k)]
            usable = [c for c in candidates if c]
            if not usable:
                notes.append("decomposition unusable: solved as one step")
                fallbacks.append(Fallback.DECOMPOSITION_UNUSABLE)
                subproblems: list[str] = []
            elif len(usable) == 1:
                subproblems = usable[0]
            else:
                subproblems = usable[self._select(problem, usable, notes, fallbacks)]
        if len(subproblems) > self.max_subproblems:
            notes.append(f"{len(subproblems)} sub-problems capped at {self.max_subproblems}")
            subproblems = subproblems[: self.max_subproblems - 1] + subproblems[-1:]
        subproblems = [*subproblems[:-1], problem]
        return dspy.Prediction(subproblems=subproblems, notes=notes, fallbacks=fallbacks)

    def _candidate(
        self, problem: str, i: int, notes: list[str], fallbacks: list[Fallback]
    ) -> list[str]:
        config = (
            {}
            if self.k == 1
            else {"temperature": self.sample_temperature, "rollout_id": i, "seed": i}
        )
        try:
            with label("decompose"):
                return _clean(self.decompose(problem=problem, config=config).subproblems)
        except (AdapterParseError, ValueError) as exc:
            notes.append(f"candidate {i} unparseable: {type(exc).__name__}")
            fallbacks.append(Fallback.CANDIDATE_UNUSABLE)
            return []

    def _select(
        self,
        problem: str,
        candidates: list[list[str]],
        notes: list[str],
        fallbacks: list[Fallback],
    ) -> int:
        listing = "\n\n".join(
            f"Candidate {i}:\n" + "\n".join(f"  {j}. {s}" for j, s in enumerate(c, 1))
            for i, c in enumerate(candidates)
        )
        try:
            with label("select"):
                best = self.select(problem=problem, candidates=listing).best
        except (AdapterParseError, ValueError) as exc:
            notes.append(f"selection unparseable ({type(exc).__name__}): first candidate used")
            fallbacks.append(Fallback.SELECTION_UNUSABLE)
            return 0
        if not isinstance(best, int) or not 0 <= best < len(candidates):
            notes.append(f"selection {best!r} out of range: first candidate used")
            fallbacks.append(Fallback.SELECTION_UNUSABLE)
            return 0
        return best
