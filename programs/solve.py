"""Stage 4: answer a sub-problem (or a whole problem) with one system profile."""

from __future__ import annotations

import dspy
from dspy.utils.exceptions import AdapterParseError
from scale.programs.profiles import SystemProfile
from scale.signatures import SolveProblem, SolveStep
from scale.signatures.solve import REASONING_DESC

from scale.lm import label
from scale.verify import extract_answer, is_equivalent

_MAX_BARE_ANSWER = 80  # characters: a longer unmarked reply is prose, not an answer


def majority(answers: list[str]) -> tuple[str, float]:
    """The most common answer, clustering by math equivalence, and its share of ``answers``.

    Empty answers never win while a non-empty one exists; ties go to the earliest cluster."""
    clusters: list[list[str]] = []
    for answer in answers:
        for cluster in clusters:
            if is_equivalent(cluster[0], answer):
                cluster.append(answer)
                break
        else:
            clusters.append([answer])
    ranked = sorted(clusters, key=lambda c: (bool(c[0].strip()), len(c)), reverse=True)
    best = ranked[0] if ranked else [""]
    return best[0], len(best) / max(len(answers), 1)


def _answer_in_unparsed(raw: str) -> str:
    """The answer in a reply DSPy could not parse: a ``\\boxed{}`` or 'answer:' marker, else
    the whole reply if it is one short line; else "" (a reply cut in mid-reasoning carries
    no answer, and passing it on as one would put it into every later step's prompt)."""
    raw = raw.strip()
    bare = "\n" not in raw and len(raw) <= _MAX_BARE_ANSWER
    return extract_answer(raw, marked_only=not bare)


class Solver(dspy.Module):
    """Answers with one profile: ``direct`` is a Predict, ``reasoning`` a ChainOfThought;
    with ``samples`` > 1 the majority of that many samples wins."""

    def __init__(self, signature: type[dspy.Signature], profile: SystemProfile, system: int):
        super().__init__()
        self.profile = profile
        self.system = system
        if profile.kind == "reasoning":
            self.predict = dspy.ChainOfThought(
                signature, rationale_field=dspy.OutputField(desc=REASONING_DESC)
            )
        else:
            self.predict = dspy.Predict(signature)

    def sample(
        self,
        n: int,
        temperature: float,
        *,
        step: int | None = None,
        stage: str = "solve",
        notes: list[str] | None = None,
        **inputs: str,
    ) -> list[str]:
        """``n`` answers at ``temperature``, each a distinct (separately cached) rollout."""
        config = {"temperature": temperature}
        return [
            self._call(stage, step, config | {"rollout_id": i, "seed": i}, notes, **inputs)
            for i in range(n)
        ]

    def forward(self, step: int | None = None, **inputs: str) -> dspy.Prediction:
        notes: list[str] = []
        if self.profile.samples > 1:
            answers = self.sample(
                self.profile.samples,
                self.profile.sample_temperature,
                step=step,
                notes=notes,
                **inputs,
            )
            answer, share = majority(answers)
            notes.append(f"self-consistency: {share:.2f} of {len(answers)} samples agree")
        else:
            answer = self._call("solve", step, {}, notes, **inputs)
        return dspy.Prediction(answer=answer, notes=notes)

    def _call(
        self, stage: str, step: int | None, config: dict, notes: list[str] | None, **inputs: str
    ) -> str:
        try:
            with self.profile.context(), label(stage, self.system, step):
                pred = self.predict(**inputs, config=config)
        except AdapterParseError as exc:
            answer = _answer_in_unparsed(str(exc.lm_response or ""))
            if notes is not None:
                found = "extracted from" if answer else "none found in"
                notes.append(f"unparseable answer: {found} the raw output")
            return answer
        # a reasoning model's own \boxed{} answer wins over a restated answer field
        reasoning = str(getattr(pred, "reasoning", "") or "")
        return extract_answer(reasoning if "\\boxed" in reasoning else str(pred.answer or ""))


def step_solver(profile: SystemProfile, system: int) -> Solver:
    """A solver of one sub-problem in context (``SolveStep``)."""
    return Solver(SolveStep, profile, system)


def problem_solver(profile: SystemProfile, system: int) -> Solver:
    """A solver of a whole problem (``SolveProblem``)."""
    return Solver(SolveProblem, profile, system)
