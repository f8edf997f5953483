"""A token budget for a whole dataset: samples go where they may still change an answer.

Per-problem stopping rules (Adaptive-Consistency, ESC) decide each problem alone. With a
budget for the whole dataset, ``BudgetPolicy`` moves samples from problems already settled
to those still split, in rounds:

- round 0 gives every problem its greedy reply;
- each later round gives one more sample to the ``round_size`` problems with the highest
  estimated gain per token: the posterior probability that the current leader is *not*
  the most likely answer (1 - Adaptive-Consistency's Beta confidence, so a problem whose
  replies all agree gains little and a split one much), over the mean cost of its samples
  so far;
- it stops when the budget cannot pay for another sample or no problem gains.

Spent tokens never exceed the budget: a sample is drawn only if its worst case (its
prompt, counted before the call, plus the ``max_tokens`` cap) fits, and only its actual
cost is then charged. The policy sees only what was drawn so far, so it runs the same on
a live model (``scale.harness.budgeted.LiveSampler``, behind ``scale eval --budget-tokens``) and
on stored chains (``StoredChains``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from scale.programs.stopping import beta_confidence, majority, tally


@dataclass(frozen=True)
class Draw:
    """One reply: its answer and what it cost."""

    answer: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Sampler(Protocol):
    """Where replies come from: ``draw([(i, k), ...])`` makes problem ``i``'s ``k``-th
    reply (0: the greedy one) for each request, at once, None where no more can be drawn;
    ``prompt_tokens(i)`` bounds its prompt's length before any call."""

    def draw(self, requests: list[tuple[int, int]]) -> list[Draw | None]: ...

    def prompt_tokens(self, problem: int) -> int: ...


@dataclass
class Allocation:
    """What the policy gave one problem: its replies in order, and its answer."""

    draws: list[Draw] = field(default_factory=list)
    exhausted: bool = False

    @property
    def answer(self) -> str:
        return majority([d.answer for d in self.draws])[0]

    @property
    def tokens(self) -> int:
        return sum(d.tokens for d in self.draws)

    def doubt(self) -> float:
        """1 - the Beta confidence that the leading answer is the most likely one."""
        ranked = tally([d.answer for d in self.draws])
        if not ranked:
            return 1.0
        second = ranked[1][1] if len(ranked) > 1 else 0
        return 1.0 - beta_confidence(ranked[0][1], second)


@dataclass
class BudgetPolicy:
    """Spend at most ``budget_tokens`` over a dataset (see the module docstring).
    ``max_tokens`` is a reply's cap (with the prompt, the worst case reserved per sample),
    ``cap`` the most replies one problem gets, ``round_size`` the problems sampled per
    round."""

    budget_tokens: int
    max_tokens: int
    cap: int = 8
    round_size: int = 10
    min_doubt: float = 0.05  # settled below (Adaptive-Consistency at 0.95 stops there)

    def run(self, sampler: Sampler, problems: int) -> list[Allocation]:
        """The allocation of every problem; ``sum(a.tokens) <= budget_tokens`` whenever
        replies respect ``max_tokens`` and prompts their bound. A round's replies are
        drawn together, each reserved at its worst case."""
        allocations = [Allocation() for _ in range(problems)]
        worst = [sampler.prompt_tokens(i) + self.max_tokens for i in range(problems)]
        spent = 0
        for start in range(0, problems, self.round_size):  # round 0: the greedy replies
            batch = range(start, min(start + self.round_size, problems))
            spent, _ = self._round(sampler, allocations, batch, worst, spent)
        while True:
            ranked = sorted(
                (-a.doubt() * len(a.draws) / a.tokens, i)
                for i, a in enumerate(allocations)
                if a.draws
                and not a.exhausted
                and len(a.draws) < self.cap
                and a.doubt() >= self.min_doubt
            )
            spent, progressed = self._round(
                sampler, allocations, [i for _, i in ranked], worst, spent
            )
            if not progressed:
                return allocations

    def _round(
        self,
        sampler: Sampler,
        allocations: list[Allocation],
        order: Sequence[int],
        worst: list[int],
        spent: int,
    ) -> tuple[int, bool]:
        """Draw one reply for each of the first ``round_size`` problems of ``order`` whose
        worst cases, reserved together, fit: (the new total spent, whether any was asked)."""
        chosen, reserved = [], spent
        for i in order:
            if len(chosen) == self.round_size:
                break
            if reserved + worst[i] <= self.budget_tokens:
                chosen.append(i)
                reserved += worst[i]
        if not chosen:
            return spent, False
        draws = sampler.draw([(i, len(allocations[i].draws)) for i in chosen])
        for i, draw in zip(chosen, draws, strict=True):
            if draw is None:
                allocations[i].exhausted = True
            else:
                allocations[i].draws.append(draw)
                spent += draw.tokens
        return spent, True


class StoredChains:
    """A sampler over stored replies: problem ``i``'s replies in the order they were drawn
    (the greedy one first; every problem has at least one)."""

    def __init__(self, chains: Sequence[Sequence[Draw]]):
        self.chains = chains

    def prompt_tokens(self, problem: int) -> int:
        return self.chains[problem][0].prompt_tokens

    def draw(self, requests: list[tuple[int, int]]) -> list[Draw | None]:
        return [self.chains[i][k] if k < len(self.chains[i]) else None for i, k in requests]
