"""SCALE: decompose -> assess difficulty -> route (System 1 / System 2) -> execute in order."""

from __future__ import annotations

import time

from scale.programs import profiles
from scale.programs.base import MathProgram, emit, finish_step
from scale.programs.decompose import Decomposer
from scale.programs.difficulty import ConsistencyEstimator, SelfEstimator
from scale.programs.profiles import SystemProfile
from scale.programs.records import Rating, Step, format_steps
from scale.programs.route import FORCED_LAST, NO_ESTIMATE, Routing, route_threshold
from scale.programs.solve import problem_solver, step_solver

from scale.adapter import final_answer
from scale.lm import label


class SCALE(MathProgram):
    """Selective resource allocation for math problems.

    1. Gate (optional): rate the whole problem; unless its difficulty exceeds
       ``routing.decompose_threshold``, answer it in one System 2 reasoning call.
    2. Decompose into sub-problems (best of ``k`` candidates when ``k`` > 1).
    3. Rate each step with ``routing.estimator`` (the last one is set to 0.9 when
       ``routing.force_last``).
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
        consistency_samples: int = 3,
    ):
        super().__init__()
        self.system1 = system1 or profiles.system1()
        self.system2 = system2 or profiles.system2()
        self.routing = routing or Routing()
        self.decomposer = Decomposer(self.system1, k=k, max_subproblems=max_subproblems)
        self.scorer = SelfEstimator(self.system1, batched=batched)
        self.solver1 = step_solver(self.system1, 1)
        self.solver2 = step_solver(self.system2, 2)
        self.consistency = ConsistencyEstimator(self.solver1, n=consistency_samples)
        self.whole = problem_solver(self.system2, 2)

    def structure(self) -> dict:
        """The constructor options that shape the program (saved with it)."""
        return {
            "k": self.decomposer.k,
            "max_subproblems": self.decomposer.max_subproblems,
            "batched": self.scorer.batched,
            "consistency_samples": self.consistency.n,
        }

    def solve(self, problem: str) -> tuple[list[Step], list[str]]:
        routing = self.routing
        if routing.decompose_threshold is not None:
            gate = self._gate(problem)
            if gate is not None:
                return [gate], []
        decomposition = self.decomposer(problem=problem)
        subproblems: list[str] = decomposition.subproblems
        emit("decomposed", subproblems=subproblems, notes=decomposition.notes)
        plan = self._plan(problem, subproblems)
        if plan is not None:
            emit("rated", difficulties=[r.difficulty for r in plan])
        systems = routing.route([r.difficulty for r in plan]) if plan is not None else None

        steps: list[Step] = []
        for i, subproblem in enumerate(subproblems):
            started = time.perf_counter()
            last = i == len(subproblems) - 1
            rating = (
                plan[i]
                if plan is not None
                else self._online_rating(problem, steps, subproblem, last)
            )
            if systems is not None:
                system = systems[i]
            else:
                system = route_threshold([rating.difficulty], routing.threshold)[0]
            step = Step(subproblem, rating.difficulty, system, notes=list(rating.notes))
            if system == 1 and rating.answer is not None:
                step.answer = rating.answer
                step.notes.append("System 1 majority answer from the consistency samples kept")
            else:
                solver = self.solver1 if system == 1 else self.solver2
                with final_answer(last):
                    pred = solver(
                        step=i,
                        problem=problem,
                        earlier_steps=format_steps(steps),
                        subproblem=subproblem,
                    )
                step.answer = pred.answer
                step.notes.extend(pred.notes)
            steps.append(finish_step(step, i, started))
        return steps, list(decomposition.notes)

    def _gate(self, problem: str) -> Step | None:
        """One System 2 step for the whole problem, or None when it should be decomposed."""
        threshold = self.routing.decompose_threshold
        if threshold >= 1.0:  # no score exceeds 1: skip the rating call
            rating = Rating(None, notes=["decompose_threshold 1: never decomposed"])
        else:
            with label("gate"):
                rating = self._rate(problem, format_steps([]), problem, None)
            if route_threshold([rating.difficulty], threshold) == [2]:
                return None  # hard enough to decompose
        started = time.perf_counter()
        with final_answer():
            pred = self.whole(step=0, problem=problem)
        step = Step(
            problem,
            rating.difficulty,
            2,
            pred.answer,
            notes=[*rating.notes, "not decomposed: answered in one System 2 call"],
        )
        return finish_step(step, 0, started)

    def _plan(self, problem: str, subproblems: list[str]) -> list[Rating] | None:
        """Up-front ratings, or None when steps are rated online (consistency)."""
        if self.routing.estimator == NO_ESTIMATE:
            return [Rating(None) for _ in subproblems]
        if self.routing.estimator == "consistency":
            return None
        forced = self.routing.force_last
        to_rate = subproblems[:-1] if forced else subproblems
        ratings = (
            self.scorer.plan(problem, to_rate, logprobs=self.routing.estimator == "logprob")
            if to_rate
            else []
        )
        if forced:
            ratings.append(Rating(FORCED_LAST, notes=["last step forced to 0.9"]))
        return ratings

    def _online_rating(
        self, problem: str, steps: list[Step], subproblem: str, last: bool
    ) -> Rating:
        if self.routing.force_last and last:
            return Rating(FORCED_LAST, notes=["last step forced to 0.9"])
        return self._rate(problem, format_steps(steps), subproblem, len(steps))

    def _rate(self, problem: str, earlier: str, subproblem: str, step: int | None) -> Rating:
        if self.routing.estimator == NO_ESTIMATE:
            return Rating(None)
        if self.routing.estimator == "consistency":
            return self.consistency.rate(problem, earlier, subproblem, step)
        return self.scorer.rate(
            problem, earlier, subproblem, step, logprobs=self.routing.estimator == "logprob"
        )
