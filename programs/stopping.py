"""When to stop sampling: fixed voting, Adaptive-Consistency and ESC's windows.

Every rule looks only at the answers drawn so far, in order, so running it online while
sampling and replaying it over stored samples give the same result on the same sequence
(the peers' own evaluation method): one stored run of k samples per problem yields
vote@1..k, adaptive-vote at any confidence and ESC at any window.

- ``fixed``: draw ``cap`` samples (self-consistency / majority vote).
- ``adaptive`` (Aggarwal et al. 2023, repo Pranjal2041/AdaptiveConsistency): after each
  sample, with v1 >= v2 the counts of the two leading answers, stop when
  P(p1 > p2) = P(x > 1/2) for x ~ Beta(v1 + 1, v2 + 1) reaches ``confidence``.
- ``window`` (ESC, Li et al. 2024, repo Yiwei98/ESC): draw samples in windows of
  ``window``; stop after a window whose answers all agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import comb
from typing import Literal

from scale.grading.verify import is_equivalent

StopKind = Literal["fixed", "adaptive", "window"]
STOP_KINDS: tuple[StopKind, ...] = ("fixed", "adaptive", "window")
MAX_SAMPLES = 64


@lru_cache(maxsize=1 << 16)
def _equivalent(a: str, b: str) -> bool:
    """``is_equivalent``, once per pair: a stopping rule re-tallies every answer after each
    sample, and replays compare the same answers again (math-verify runs in a worker)."""
    return is_equivalent(a, b)


def tally(answers: list[str]) -> list[tuple[str, int, int]]:
    """Answers clustered by math equivalence: ``(representative, count, first index)``,
    most common first (ties: the cluster seen first). Empty answers carry no vote."""
    clusters: list[list] = []  # [representative, count, first index]
    for index, answer in enumerate(answers):
        if not answer.strip():
            continue
        for cluster in clusters:
            if _equivalent(cluster[0], answer):
                cluster[1] += 1
                break
        else:
            clusters.append([answer, 1, index])
    return [tuple(c) for c in sorted(clusters, key=lambda c: (-c[1], c[2]))]


def majority(answers: list[str]) -> tuple[str, float]:
    """The most common answer by math equivalence and its share of all ``answers``
    (empty answers count in the share but never win); ``("", 0.0)`` when none is usable."""
    ranked = tally(answers)
    if not ranked:
        return "", 0.0
    return ranked[0][0], ranked[0][1] / len(answers)


def beta_confidence(leading: int, second: int) -> float:
    """P(x > 1/2) for x ~ Beta(leading + 1, second + 1), exactly: the probability that
    the leading answer is the more likely one, under a uniform prior."""
    n = leading + second + 1
    return float(Fraction(sum(comb(n, j) for j in range(leading + 1)), 2**n))


@dataclass(frozen=True)
class StopRule:
    """A stopping rule over an ordered sequence of sampled answers, with a cap."""

    kind: StopKind = "fixed"
    cap: int = 5
    confidence: float = 0.95
    window: int = 3

    def __post_init__(self) -> None:
        if self.kind not in STOP_KINDS:
            raise ValueError(f"stop rule must be one of {STOP_KINDS}, got {self.kind!r}")
        if not 1 <= self.cap <= MAX_SAMPLES:
            raise ValueError(f"the sample cap must be in 1..{MAX_SAMPLES}, got {self.cap}")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.kind == "window" and not 1 <= self.window <= self.cap:
            raise ValueError(f"the window must be in 1..cap ({self.cap}), got {self.window}")

    def batch(self, drawn: int) -> int:
        """How many samples to draw next (0: done by the cap)."""
        left = self.cap - drawn
        return min(self.window, left) if self.kind == "window" else min(1, left)

    def done(self, answers: list[str]) -> bool:
        """Whether sampling stops after ``answers`` (drawn in order)."""
        if len(answers) >= self.cap:
            return True
        if self.kind == "fixed" or not answers:
            return False
        if self.kind == "window":
            if len(answers) % self.window:
                return False
            last = tally(answers[-self.window :])
            return len(last) == 1 and last[0][1] == self.window
        ranked = tally(answers)
        if not ranked:
            return False
        second = ranked[1][1] if len(ranked) > 1 else 0
        return beta_confidence(ranked[0][1], second) >= self.confidence

    def replay(self, answers: list[str]) -> int:
        """How many of the stored ``answers`` the rule would have drawn (needs at least
        that many; raises if the sequence ends first)."""
        drawn = 0
        while True:
            step = self.batch(drawn)
            if step == 0:
                return drawn
            if drawn + step > len(answers):
                raise ValueError(f"the rule needs more than the {len(answers)} stored samples")
            drawn += step
            if self.done(answers[:drawn]):
                return drawn

    def describe(self) -> str:
        if self.kind == "adaptive":
            return f"adaptive c={self.confidence:g} cap {self.cap}"
        if self.kind == "window":
            return f"window w={self.window} cap {self.cap}"
        return f"fixed {self.cap}"
