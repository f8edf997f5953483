"""SCALE: gate -> decompose -> assess difficulty -> route (System 1 / System 2) -> execute."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

from scale.models.adapter import final_answer
from scale.models.lm import label
from scale.programs import profiles
from scale.programs.base import MathProgram, finish_step
from scale.programs.callbacks import callback
from scale.programs.decompose import Decomposer
from scale.programs.estimators import build_estimator
from scale.programs.evidence import Estimator, Evidence
from scale.programs.profiles import SystemProfile
from scale.programs.records import Fallback, Rating, Sample, Step, format_steps
from scale.programs.route import FORCED_LAST, Routing, route_threshold
from scale.programs.solve import Solver
from scale.programs.stated import Assessor

# (program, estimator) pinned by SCALE.rating_with in the current context
_PINNED: contextvars.ContextVar[tuple[SCALE, Estimator] | None] = contextvars.ContextVar(
    "scale_pinned_estimator", default=None
)


class SCALE(MathProgram):
    """Selective resource allocation for math problems.

    1. Gate (``routing.gate``): rate the whole problem; at or below the gate, System 1
       answers it at once (the estimator's own answer when it made one).
    2. Otherwise decompose it into sub-problems (best of ``k`` candidates when ``k`` > 1),
       or, with ``routing.decompose`` off, let System 2 answer it whole.
    3. Rate each step with ``routing.estimator`` (the last one is set to 0.9 when
       ``routing.force_last``): up front for budget routing and stated scores, else as
       each step runs, with System 1 in the context of the earlier answers.
    4. Route: System 2 above ``routing.threshold`` (or for the hardest ``routing.budget``
       fraction of the steps), System 1 otherwise.
    5. Solve the steps in order, each seeing every earlier step and its answer; the last
       step's answer is the final answer.
    """

    method = "scale"

    def __init__(
        self,
        system1: SystemProfile | None = None,
        system2: SystemProfile | None = None,
        *,
        routing: Routing | None = None,
        k: int = 1,
        max_subproblems: int = 6,
        batched: bool = True,
        agreement_samples: int = 3,
    ):
        super().__init__()
        self.system1 = system1 or profiles.system1()
        self.system2 = system2 or profiles.system2()
        self.routing = routing or Routing()
        self.decomposer = Decomposer(self.system1, k=k, max_subproblems=max_subproblems)
        self.assessor = Assessor(self.system1, batched=batched)
        self.solver1 = Solver(self.system1, 1, whole=False)
        self.solver2 = Solver(self.system2, 2, whole=False)
        self.whole1 = Solver(self.system1, 1, whole=True)
        self.whole2 = Solver(self.system2, 2, whole=True)
        if agreement_samples < 2:
            raise ValueError("agreement_samples must be at least 2")
        self.agreement_samples = agreement_samples
        self._estimator: Estimator | None = None
        self._estimator_for: tuple | None = None  # the routing it was built for

    def structure(self) -> dict:
        """The constructor options that shape the program (saved with it)."""
        return {
            "k": self.decomposer.k,
            "max_subproblems": self.decomposer.max_subproblems,
            "batched": self.assessor.batched,
            "agreement_samples": self.agreement_samples,
        }

    @property
    def estimator(self) -> Estimator:
        """The estimator ``routing.estimator`` names (rebuilt when it or the calibration
        changes), or the one pinned by ``rating_with``."""
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] is self:
            return pinned[1]
        wanted = (self.routing.estimator, repr(self.routing.calibration))
        if self._estimator is None or self._estimator_for != wanted:
            self._estimator = build_estimator(self.routing.estimator, self)
            self._estimator_for = wanted
        return self._estimator

    @contextlib.contextmanager
    def rating_with(self, estimator: Estimator) -> Iterator[None]:
        """Rate with ``estimator`` inside the block, whatever the routing names (used to
        label steps by outcome with SCALE's own step loop). The pin holds in this thread's
        context only, so threads can label with the same program at once."""
        token = _PINNED.set((self, estimator))
        try:
            yield
        finally:
            _PINNED.reset(token)

    def evidence(self, problem: str, subproblem: str, earlier: str, step: int | None) -> Evidence:
        """System 1's evidence on one step (``step`` None: on the whole problem)."""
        return Evidence(
            self.whole1 if step is None else self.solver1,
            problem=problem,
            subproblem=subproblem,
            earlier=earlier,
            step=step,
            logprobs=self.estimator.logprobs,
        )

    def solve(self, problem: str) -> tuple[list[Step], list[str], list[Fallback]]:
        if self.routing.gate is not None or not self.routing.decompose:
            whole = self._gate(problem)
            if whole is not None:
                return [whole], [], []
        decomposition = self.decomposer(problem=problem)
        subproblems: list[str] = decomposition.subproblems
        callback().on_decomposed(subproblems, decomposition.notes)
        plan, systems = self._plan(problem, subproblems)
        steps: list[Step] = []
        for i, subproblem in enumerate(subproblems):
            started = time.perf_counter()
            earlier = format_steps(steps)
            if plan is not None:
                rating, system = plan[i], systems[i]
            else:
                rating = self._rate_online(problem, subproblem, earlier, i, len(subproblems))
                system = route_threshold([rating.difficulty], self.routing.threshold)[0]
            last = i == len(subproblems) - 1
            step = self._execute(problem, subproblem, earlier, i, rating, system, last=last)
            steps.append(finish_step(step, i, started))
        return steps, list(decomposition.notes), list(decomposition.fallbacks)

    def _gate(self, problem: str) -> Step | None:
        """The whole problem as one step, or None when it is to be decomposed."""
        started = time.perf_counter()
        rating = Rating(None)
        evidence = self.evidence(problem, problem, "", None)
        if self.routing.gate is not None:
            with label("gate"):
                rating = self.estimator.rate(evidence)
            if route_threshold([rating.difficulty], self.routing.gate) == [1]:
                callback().on_gated(rating, "system1")
                step = Step(problem, rating.difficulty, 1, notes=list(rating.notes))
                step.fallbacks = list(rating.fallbacks)
                if rating.answer is not None:
                    step.answer = rating.answer
                    step.notes.append("answered at once: System 1's answer from the rating kept")
                else:
                    _solve_into(step, self.whole1, None, problem=problem)
                return finish_step(step, None, started)
        if self.routing.decompose:
            callback().on_gated(rating, "decompose")
            return None
        callback().on_gated(rating, "system2")
        step = Step(problem, rating.difficulty, 2, notes=[*rating.notes, "not decomposed"])
        step.fallbacks = list(rating.fallbacks)
        drawn = None
        if self.system2.greedy_first and self.system2.makes_same_calls(self.system1):
            drawn = evidence.replies  # System 2 goes on from System 1's greedy reply and samples
            if drawn:
                step.notes.append(f"continues from System 1's {len(drawn)} replies")
        # e.g. the cross-check's program: one more chain in the vote, when it answered
        votes = [v for v in evidence.votes if v.answer]
        if votes and self.system2.samples > 1:
            step.notes.append(f"counts {len(votes)} program replies as chains")
        with final_answer():
            _solve_into(step, self.whole2, None, drawn=drawn, votes=votes, problem=problem)
        return finish_step(step, None, started)

    def _plan(
        self, problem: str, subproblems: list[str]
    ) -> tuple[list[Rating] | None, list[int] | None]:
        """Up-front ratings and systems, or (None, None) when steps are rated as they run."""
        estimator = self.estimator
        if self.routing.mode == "threshold" and estimator.online:
            return None, None
        forced = self.routing.force_last
        to_rate = subproblems[:-1] if forced else subproblems

        def evidence(i: int, steps: list[Step]) -> Evidence:
            return self.evidence(problem, subproblems[i], format_steps(steps), i)

        plan = estimator.plan(problem, to_rate, evidence) if to_rate else []
        if forced:
            plan.append(Rating(FORCED_LAST, notes=["last step forced to 0.9"]))
        difficulties = [r.difficulty for r in plan]
        callback().on_rated(difficulties)
        return plan, self.routing.route(difficulties)

    def _rate_online(
        self, problem: str, subproblem: str, earlier: str, index: int, n: int
    ) -> Rating:
        if self.routing.force_last and index == n - 1:
            return Rating(FORCED_LAST, notes=["last step forced to 0.9"])
        return self.estimator.rate(self.evidence(problem, subproblem, earlier, index))

    def _execute(
        self,
        problem: str,
        subproblem: str,
        earlier: str,
        index: int,
        rating: Rating,
        system: int,
        *,
        last: bool,
    ) -> Step:
        step = Step(subproblem, rating.difficulty, system, notes=list(rating.notes))
        step.fallbacks = list(rating.fallbacks)
        if system == 1 and rating.answer is not None and rating.context == earlier:
            step.answer = rating.answer
            step.notes.append("System 1's answer from the rating kept")
            return step
        with final_answer(last):
            _solve_into(
                step,
                self.solver1 if system == 1 else self.solver2,
                index,
                problem=problem,
                earlier_steps=earlier,
                subproblem=subproblem,
            )
        return step


def _solve_into(
    record: Step,
    solver: Solver,
    index: int | None,
    drawn: list[Sample] | None = None,
    votes: list[Sample] | None = None,
    **inputs: str,
) -> None:
    """Solve with ``solver`` (continuing ``drawn``, counting ``votes``) and put its answer,
    samples, notes and fallbacks on ``record``."""
    pred = solver(step=index, drawn=drawn, votes=votes, **inputs)
    record.answer = pred.answer
    record.samples = pred.samples
    record.notes.extend(pred.notes)
    record.fallbacks.extend(pred.fallbacks)
