"""Stage 2: difficulty estimators, one interface, looked up by name.

An estimator turns ``Evidence`` about a step (or a whole problem) into a ``Rating``: a score
in [0, 1] (None = unknown, treated as hardest) and, when its calls produced one, System 1's
answer, kept if the step stays on System 1. Evidence is made on first request and shared,
so estimators combined with ``+`` pay for System 1's greedy reply once.

- ``self``: the model states a number (the paper); ``logprob``: that number's expected value
  under the token distribution. Both rate every step up front (``online = False``;
  ``scale.programs.stated``).
- ``agreement``: System 1's greedy reply plus ``m - 1`` samples; 1 - the majority's share.
- ``confidence``: how sure System 1 was of its greedy reply, from token logprobs (1 - the
  geometric-mean token probability over its least confident window); ``confidence-mean``:
  over the whole reply; ``confidence-total``: the whole reply's probability, per 100 tokens
  (so a long reply with the same doubt per token scores higher).
- ``check``: System 1's calculation evaluated exactly (``scale.grading.calc``) against its answer:
  0 when it matches, 0.9 when it cannot be read, 1 when it gives another value.
- ``crosscheck``: System 1's greedy reply against one greedy program (the model writes a
  SymPy program, the sandbox runs it): agreement, silence or disagreement sets the band
  ([0, 1/3], [1/3, 2/3], [2/3, 1]), the greedy reply's ``confidence-total`` orders within
  it. The program's answer is kept as a vote for System 2 (``Evidence.votes``).
- ``calibrated``: 1 - P(System 1's greedy answer is right), from a logistic model over
  the greedy reply's features (and, if the model uses them, its agreement with a greedy
  program), fitted by ``scale compile --replay`` and saved in the program's routing.
- ``none``: no calls; every step counts as hardest.
- ``a+b``: the highest of the parts' scores (any part's doubt escalates).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal

from scale.grading.calc import check
from scale.grading.verify import is_equivalent
from scale.programs.calibrated import Calibration, gate_features
from scale.programs.evidence import Estimator, Evidence, NoEstimate
from scale.programs.logprobs import doubt as reply_doubt
from scale.programs.profiles import SystemProfile
from scale.programs.records import Fallback, Rating
from scale.programs.solve import Solver
from scale.programs.stated import Stated
from scale.programs.stopping import majority

if TYPE_CHECKING:
    from scale.programs.scale import SCALE

UNREADABLE_CALCULATION = 0.9


class Agreement(Estimator):
    """System 1's greedy reply and ``m - 1`` samples: difficulty = 1 - the majority's
    share; the majority answer rides along."""

    name = "agreement"

    def __init__(self, m: int = 3):
        if m < 2:
            raise ValueError("the agreement estimator needs m >= 2 replies")
        self.m = m

    def rate(self, evidence: Evidence) -> Rating:
        answers = [r.answer for r in evidence.samples(self.m)]
        answer, share = majority(answers)
        return Rating(
            round(1.0 - share, 6),
            answer=answer,
            context=evidence.earlier,
            notes=[f"System 1 replies: {answers}"],
        )


class Confidence(Estimator):
    """How unsure System 1 was of its greedy reply, from the logprobs of its tokens:
    ``lowest``: 1 - the geometric-mean token probability over its least confident window;
    ``mean``: the same over the whole reply; ``total``: 1 - the reply's probability per
    ``TOTAL_TOKENS`` tokens of its length, so a long reply weighs its doubts in full."""

    logprobs = True
    NAMES: ClassVar[dict[str, str]] = {
        "lowest": "confidence",
        "mean": "confidence-mean",
        "total": "confidence-total",
    }

    def __init__(self, over: Literal["lowest", "mean", "total"]):
        self.over = over
        self.name = self.NAMES[over]

    def rate(self, evidence: Evidence) -> Rating:
        reply = evidence.greedy()
        doubt = reply_doubt(reply.logprobs or [], self.over)
        if doubt is None:
            # a reply that could not be read keeps no logprobs: its own fallback says why
            unread = reply.fallback is not None
            return Rating(
                None,
                answer=reply.answer,
                context=evidence.earlier,
                notes=[
                    "the reply could not be read: treated as hard"
                    if unread
                    else "no logprobs from this backend: treated as hard"
                ],
                fallbacks=[] if unread else [Fallback.NO_LOGPROBS],
            )
        return Rating(round(doubt, 6), answer=reply.answer, context=evidence.earlier)


class Check(Estimator):
    """System 1's calculation against its answer (``scale.grading.calc.check``)."""

    name = "check"
    SCORES: ClassVar[dict[str, float]] = {
        "match": 0.0,
        "unparseable": UNREADABLE_CALCULATION,
        "mismatch": 1.0,
    }

    def rate(self, evidence: Evidence) -> Rating:
        sample = evidence.greedy()
        result = check(sample.calculation or "", sample.answer)
        notes = [f"calculation {sample.calculation!r}: {result.status}"]
        if result.reason:
            notes[0] += f" ({result.reason})"
        return Rating(
            self.SCORES[result.status],
            answer=sample.answer,
            context=evidence.earlier,
            notes=notes,
        )


class CrossCheck(Estimator):
    """System 1's greedy reply against a greedy program by the same model. The band says
    how the two answers relate (agree: [0, 1/3]; either is empty: [1/3, 2/3]; they differ:
    [2/3, 1]); the reply's ``confidence-total`` doubt orders problems within a band
    (mid-band without logprobs). System 1's answer rides along (the program's when System
    1 gave none)."""

    name = "crosscheck"
    logprobs = True
    BANDS: ClassVar[dict[str, float]] = {"agree": 0.0, "silent": 0.5, "differ": 1.0}
    AGREED = 0.333  # a gate here answers agreeing problems at once
    UNCONTESTED = 0.666  # ... and those whose program was silent: all but disagreements

    def __init__(self, system1: SystemProfile):
        self.coders = _coders(system1)

    def rate(self, evidence: Evidence) -> Rating:
        reply = evidence.greedy()
        coded = evidence.program(self.coders[evidence.whole])
        if not reply.answer or not coded.answer:
            relation = "silent"
        else:
            relation = "agree" if is_equivalent(reply.answer, coded.answer) else "differ"
        doubt = reply_doubt(reply.logprobs or [], "total")
        notes = [f"System 1 {reply.answer!r}, its program {coded.answer!r}: {relation}"]
        fallbacks = [coded.fallback] if coded.fallback is not None else []
        if doubt is None:
            notes.append("no logprobs on System 1's reply: mid-band")
            if reply.fallback is None:
                fallbacks.append(Fallback.NO_LOGPROBS)
        score = (2 * self.BANDS[relation] + (0.5 if doubt is None else doubt)) / 3
        return Rating(
            round(score, 6),
            answer=reply.answer or coded.answer,
            context=evidence.earlier,
            notes=notes,
            fallbacks=fallbacks,
        )


class Calibrated(Estimator):
    """1 - the calibrated probability that System 1's greedy answer is right; the notes
    name the features that moved it most. A model using program features writes one
    greedy program, which (as for ``crosscheck``) then votes in System 2."""

    name = "calibrated"
    logprobs = True

    def __init__(self, calibration: Calibration, system1: SystemProfile):
        self.calibration = calibration
        self.max_tokens = system1.max_tokens
        self.coders = _coders(system1) if calibration.uses_program else None

    def rate(self, evidence: Evidence) -> Rating:
        reply = evidence.greedy()
        coded = evidence.program(self.coders[evidence.whole]) if self.coders else None
        values = gate_features(reply, coded, self.max_tokens)
        right = self.calibration.probability(values)
        terms = sorted(self.calibration.contributions(values).items(), key=lambda t: -abs(t[1]))
        said = ", ".join(f"{name} {term:+.2f}" for name, term in terms[:3])
        return Rating(
            round(1.0 - right, 6),
            answer=reply.answer or (coded.answer if coded else reply.answer),
            context=evidence.earlier,
            notes=[f"P(System 1 right) {right:.2f}; log-odds terms: {said}"],
            fallbacks=[coded.fallback] if coded is not None and coded.fallback else [],
        )


def _coders(system1: SystemProfile) -> dict[bool, Solver]:
    """Greedy program writers on System 1's model, for whole problems and for steps."""
    coding = dataclasses.replace(
        system1, kind="program", max_tokens=None, samples=1, logprobs=False
    )
    return {whole: Solver(coding, 1, whole=whole) for whole in (True, False)}


def _calibrated(program: SCALE) -> Calibrated:
    found = program.routing.calibration
    if found is None:
        raise ValueError(
            "the calibrated estimator needs a fitted model: compile one with "
            "`scale compile --replay FOLDER` and run that program file"
        )
    return Calibrated(Calibration.from_dict(found), program.system1)


class Combined(Estimator):
    """Several estimators on the same evidence: the highest score wins (an unknown one
    counts as hardest); the first answer any part produced rides along."""

    def __init__(self, parts: list[Estimator]):
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.online = any(p.online for p in parts)
        self.logprobs = any(p.logprobs for p in parts)

    def rate(self, evidence: Evidence) -> Rating:
        ratings = [p.rate(evidence) for p in self.parts]
        scores = [r.difficulty for r in ratings]
        difficulty = None if any(s is None for s in scores) else max(scores)
        answer = next((r.answer for r in ratings if r.answer is not None), None)
        context = next((r.context for r in ratings if r.answer is not None), None)
        return Rating(
            difficulty,
            answer=answer,
            context=context,
            notes=[n for r in ratings for n in r.notes],
            fallbacks=[f for r in ratings for f in r.fallbacks],
        )


Factory = Callable[["SCALE"], Estimator]
ESTIMATORS: dict[str, Factory] = {
    "none": lambda program: NoEstimate(),
    "self": lambda program: Stated(program.assessor, logprobs=False),
    "logprob": lambda program: Stated(program.assessor, logprobs=True),
    "agreement": lambda program: Agreement(program.agreement_samples),
    **{
        name: (lambda program, over=over: Confidence(over))
        for over, name in Confidence.NAMES.items()
    },
    "check": lambda program: Check(),
    "crosscheck": lambda program: CrossCheck(program.system1),
    "calibrated": _calibrated,
}
NO_ESTIMATE = "none"


def check_estimator(name: str) -> str:
    """``name`` if it names a registered estimator or a ``+`` combination of them."""
    parts = name.split("+") if isinstance(name, str) else [name]
    unknown = [p for p in parts if p not in ESTIMATORS]
    if unknown or (len(parts) > 1 and NO_ESTIMATE in parts) or len(set(parts)) != len(parts):
        raise ValueError(
            f"unknown estimator {name!r}: use one of {', '.join(ESTIMATORS)}, or several "
            "joined with '+' (e.g. agreement+check)"
        )
    return name


def build_estimator(name: str, program: SCALE) -> Estimator:
    """The estimator ``name`` (see ``ESTIMATORS``; ``a+b`` combines) for ``program``."""
    parts = check_estimator(name).split("+")
    if len(parts) == 1:
        return ESTIMATORS[name](program)
    return Combined([ESTIMATORS[p](program) for p in parts])
