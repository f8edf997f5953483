"""What estimators rate: ``Evidence`` about one step or problem (System 1's replies, made
on first request and shared), and the ``Estimator`` interface."""

from __future__ import annotations

from collections.abc import Callable

from scale.programs.records import Rating, Sample, Step
from scale.programs.solve import Solver


class Evidence:
    """What System 1 says about one step (or the whole problem), asked on first request
    and shared by the estimators rating it: its greedy reply (with token logprobs when an
    estimator needs them) and further samples."""

    def __init__(
        self,
        solver: Solver,
        *,
        problem: str,
        subproblem: str,
        earlier: str,
        step: int | None,
        logprobs: bool = False,
    ):
        self.solver = solver
        self.problem = problem
        self.subproblem = subproblem
        self.earlier = earlier
        self.step = step
        self.logprobs = logprobs
        self._replies: list[Sample] = []
        self._votes: list[Sample] = []

    @property
    def replies(self) -> list[Sample]:
        """The replies made so far: the greedy one first, then samples by rollout id."""
        return list(self._replies)

    @property
    def votes(self) -> list[Sample]:
        """Replies of another kind made so far (a program's): they count in System 2's
        vote but are not its chains."""
        return list(self._votes)

    @property
    def whole(self) -> bool:
        return self.solver.whole

    def _inputs(self) -> dict[str, str]:
        if self.whole:
            return {"problem": self.problem}
        return {
            "problem": self.problem,
            "earlier_steps": self.earlier,
            "subproblem": self.subproblem,
        }

    def greedy(self) -> Sample:
        """System 1's greedy reply (one call, made once)."""
        if not self._replies:
            self._replies.append(
                self.solver.reply(
                    step=self.step, stage="assess", logprobs=self.logprobs, **self._inputs()
                )
            )
        return self._replies[0]

    def samples(self, m: int) -> list[Sample]:
        """The greedy reply and ``m - 1`` samples at the sample temperature."""
        self.greedy()
        while len(self._replies) < m:
            self._replies.append(
                self.solver.reply(
                    step=self.step, stage="assess", rollout=len(self._replies), **self._inputs()
                )
            )
        return self._replies[:m]

    def program(self, coder: Solver) -> Sample:
        """One greedy program from ``coder`` on the same inputs (one call, made once)."""
        if not self._votes:
            self._votes.append(coder.reply(step=self.step, stage="assess", **self._inputs()))
        return self._votes[0]


class Estimator:
    """Rates one step or problem from its ``Evidence``. ``online`` estimators need the
    earlier steps' answers (they run System 1 in context), so they rate each step when it
    runs; the others can rate every step up front with ``plan``."""

    name = "estimator"
    online = True
    logprobs = False  # whether the greedy reply must carry token logprobs

    def rate(self, evidence: Evidence) -> Rating:
        raise NotImplementedError

    def plan(self, problem: str, subproblems: list[str], evidence: Callable) -> list[Rating]:
        """Ratings of all steps before any is solved. The default runs System 1 through
        the steps in order, each in the context of System 1's own earlier answers
        (``evidence(index, earlier_steps)`` makes a step's evidence)."""
        ratings: list[Rating] = []
        steps: list[Step] = []
        for i, subproblem in enumerate(subproblems):
            rating = self.rate(evidence(i, steps))
            ratings.append(rating)
            steps.append(Step(subproblem, answer=rating.answer or ""))
        return ratings


class NoEstimate(Estimator):
    """No calls: every step and problem counts as hardest."""

    name = "none"
    online = False

    def rate(self, evidence: Evidence) -> Rating:
        return Rating(None)

    def plan(self, problem: str, subproblems: list[str], evidence: Callable) -> list[Rating]:
        return [Rating(None) for _ in subproblems]
