"""Honest selection of an allocation recipe on recorded calls (``scale compile --replay``).

- Every candidate is scored by K-fold cross-validation on the dev problems: whatever it fits
  (the calibrated model, a gate set at a share of problems) is fitted on the other folds.
- The selection itself is estimated by nested cross-validation: in each outer fold the whole
  selection runs on the other folds and the chosen recipe answers the held-out problems, so
  the estimate carries the winner's curse instead of hiding it.
- The incumbent (the default program, or one the user passes) is replaced only if the paired
  bootstrap lower bound (2.5%) of the selection's advantage under the objective is above 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scale.optimizers.calibration import brier, fit_calibration, folds_of
from scale.optimizers.outcomes import auroc
from scale.optimizers.recipes import (
    RAW,
    Cost,
    Played,
    Recipe,
    RecordedProblem,
    is_right,
    play,
    score,
)
from scale.programs.calibrated import (
    FEATURES,
    PROGRAM_FEATURES,
    Calibration,
    gate_features,
    reads_program,
)
from scale.programs.stopping import StopRule

OBJECTIVES = ("accuracy", "budget", "cost-aware")
SHARES = (0.25, 0.5, 0.75)  # System 1's share of problems a fitted gate keeps
RULES = (
    StopRule("adaptive", 3, 0.8),
    StopRule("adaptive", 5, 0.8),
    StopRule("adaptive", 5, 0.95),
    StopRule("adaptive", 8, 0.8),
)
DEFAULT_RULE = StopRule("adaptive", 5, 0.8)
BASE_FEATURES = tuple(f for f in FEATURES if f not in PROGRAM_FEATURES)
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Objective:
    """What selection maximizes: ``accuracy`` (ties to fewer tokens), ``budget`` (accuracy
    at no more than ``budget_tokens`` per problem on average) or ``cost-aware`` (accuracy
    points minus ``points_per_1k`` points per 1,000 tokens per problem)."""

    kind: str = "accuracy"
    budget_tokens: float | None = None
    points_per_1k: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.kind!r}")
        if self.kind == "budget" and not (self.budget_tokens and self.budget_tokens > 0):
            raise ValueError("the budget objective needs budget_tokens > 0")
        if not (math.isfinite(self.points_per_1k) and self.points_per_1k >= 0):
            raise ValueError("points per 1,000 tokens must be a finite number >= 0")

    def points(self, played: Sequence[Played]) -> np.ndarray:
        """Each problem's value: 100 for a right answer, less its token price."""
        value = np.array([100.0 * p.correct for p in played])
        if self.kind == "cost-aware":
            value -= self.points_per_1k * np.array([p.tokens for p in played]) / 1000
        return value

    def rank(self, played: Sequence[Played]) -> tuple[float, ...]:
        """Higher is better; fewer tokens break ties."""
        tokens = float(np.mean([p.tokens for p in played]))
        value = float(self.points(played).mean())
        if self.kind == "budget":
            fits = tokens <= self.budget_tokens
            return (float(fits), value if fits else -tokens, -tokens)
        return (round(value, 9), -tokens)

    def describe(self) -> str:
        if self.kind == "budget":
            return f"accuracy at <= {self.budget_tokens:g} tokens per problem"
        if self.kind == "cost-aware":
            return f"accuracy points - {self.points_per_1k:g} per 1,000 tokens per problem"
        return "accuracy (ties to fewer tokens)"


@dataclass(frozen=True)
class Candidate:
    """A recipe before fitting: a fixed gate, or (``share``) the gate that keeps that share
    of the training problems on System 1; ``features`` for the calibrated estimator."""

    estimator: str
    rule: StopRule
    gate: float | None = None
    share: float | None = None
    features: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.gate is not None and self.gate >= 1:
            return "CoT (every problem on System 1)"
        name = self.estimator + ("+program" if reads_program(self.features) else "")
        if self.share is not None:
            gate = f"gate at {self.share:.0%} on System 1"
        else:
            gate = "no gate" if self.gate is None else f"gate {self.gate:g}"
        return f"{name}, {gate}, {self.rule.describe()}"


def candidates(programs: bool) -> list[Candidate]:
    """The grid: the default program and its System 2 variants, CoT, and each estimator at
    three System 1 shares with each rule (programs: also calibrated with program features)."""
    out = [Candidate("agreement", rule, gate=0.0) for rule in RULES]
    out += [Candidate("none", rule) for rule in RULES]
    out.append(Candidate("none", DEFAULT_RULE, gate=1.0))
    feature_sets = [BASE_FEATURES] + ([tuple(FEATURES)] if programs else [])
    for rule in RULES:
        for share in SHARES:
            out += [
                Candidate(e, rule, share=share) for e in ("confidence-total", "confidence-mean")
            ]
            out += [Candidate("calibrated", rule, share=share, features=f) for f in feature_sets]
    return out


@dataclass
class Fitter:
    """Fits candidates on training problems, each calibrated model once per training set."""

    max_tokens: int | None
    seed: int = 0
    _models: dict[tuple, Calibration] = field(default_factory=dict)
    _features: dict[tuple, dict[str, float]] = field(default_factory=dict)
    _system2: dict[tuple, tuple[str, Cost]] = field(default_factory=dict)

    def calibration(self, features: tuple[str, ...], train: Sequence[RecordedProblem]):
        key = (features, tuple(p.id for p in train))
        if key not in self._models:
            rows = [self.features(p, reads_program(features)) for p in train]
            right = [_greedy_right(p) for p in train]
            self._models[key] = fit_calibration(rows, right, features, seed=self.seed)
        return self._models[key]

    def features(self, problem: RecordedProblem, program: bool) -> dict[str, float]:
        """``gate_features`` of the problem's greedy reply (and program), read once."""
        key = (problem.id, program)
        if key not in self._features:
            coded = problem.program if program else None
            self._features[key] = gate_features(problem.greedy, coded, self.max_tokens)
        return self._features[key]

    def score(self, recipe: Recipe, problem: RecordedProblem) -> float | None:
        features = self.features(problem, recipe.program) if recipe.calibration else None
        return score(recipe, problem, self.max_tokens, features)

    def fit(self, candidate: Candidate, train: Sequence[RecordedProblem]) -> Recipe:
        calibration = None
        if candidate.estimator == "calibrated":
            calibration = self.calibration(candidate.features, train)
        recipe = Recipe(candidate.estimator, candidate.gate, candidate.rule, calibration)
        if candidate.share is None:
            return recipe
        scores = sorted(1.0 if s is None else s for s in (self.score(recipe, p) for p in train))
        kept = max(1, math.ceil(candidate.share * len(scores)))
        return Recipe(candidate.estimator, scores[kept - 1], candidate.rule, calibration)

    def play(self, recipe: Recipe, problems: Sequence[RecordedProblem]) -> list[Played]:
        return [play(recipe, p, self.score(recipe, p), self._system2) for p in problems]


def _greedy_right(problem: RecordedProblem) -> bool:
    return is_right(problem.gold, problem.greedy.answer)


def out_of_fold(
    problems: Sequence[RecordedProblem], folds: int, seed: int
) -> Iterator[tuple[list[int], list[RecordedProblem]]]:
    """The ``folds`` splits of ``problems``: each fold's indices and the problems outside it."""
    for held in folds_of(len(problems), folds, seed):
        held_set = set(held.tolist())
        yield held.tolist(), [p for i, p in enumerate(problems) if i not in held_set]


def cross_validated(
    fitter: Fitter, candidate: Candidate, problems: Sequence[RecordedProblem], folds: int
) -> list[Played]:
    """The candidate's outcome on every problem, each fitted without the problem's fold."""
    out: list[Played | None] = [None] * len(problems)
    for held, train in out_of_fold(problems, folds, fitter.seed):
        recipe = fitter.fit(candidate, train)
        for i, played in zip(held, fitter.play(recipe, [problems[i] for i in held]), strict=True):
            out[i] = played
    return out  # type: ignore[return-value]


@dataclass
class Scored:
    """A candidate and its cross-validated outcomes."""

    candidate: Candidate
    played: list[Played]

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.candidate.label,
            "accuracy": round(float(np.mean([p.correct for p in self.played])), 4),
            "tokens_per_problem": round(float(np.mean([p.tokens for p in self.played])), 1),
            "system2_fraction": round(float(np.mean([p.system == 2 for p in self.played])), 3),
        }


def select(
    fitter: Fitter,
    grid: Sequence[Candidate],
    problems: Sequence[RecordedProblem],
    objective: Objective,
    folds: int,
) -> tuple[Candidate, list[Scored]]:
    """The candidate with the best cross-validated objective (the earlier on exact ties),
    and every candidate's scores."""
    scored = [Scored(c, cross_validated(fitter, c, problems, folds)) for c in grid]
    best = max(range(len(scored)), key=lambda i: (objective.rank(scored[i].played), -i))
    return scored[best].candidate, scored


def nested(
    fitter: Fitter,
    grid: Sequence[Candidate],
    problems: Sequence[RecordedProblem],
    objective: Objective,
    folds: int,
) -> tuple[list[Played], list[str]]:
    """Out-of-fold outcomes of the whole selection: in each outer fold, ``select`` on the
    rest, fit the winner there, answer the fold. Also the winner of each outer fold."""
    out: list[Played | None] = [None] * len(problems)
    chosen = []
    for held, train in out_of_fold(problems, folds, fitter.seed + 1):
        winner, _ = select(fitter, grid, train, objective, folds)
        chosen.append(winner.label)
        recipe = fitter.fit(winner, train)
        for i, played in zip(held, fitter.play(recipe, [problems[i] for i in held]), strict=True):
            out[i] = played
    return out, chosen  # type: ignore[return-value]


def estimate(played: Sequence[Played], seed: int = 0) -> dict[str, Any]:
    """Accuracy with a bootstrap 95% interval, tokens per problem, System 2's share."""
    correct = np.array([p.correct for p in played], dtype=float)
    low, high = _bootstrap(correct, seed)
    return {
        "n": len(played),
        "accuracy": round(float(correct.mean()), 4),
        "ci95": [round(low, 4), round(high, 4)],
        "tokens_per_problem": round(float(np.mean([p.tokens for p in played])), 1),
        "system2_fraction": round(float(np.mean([p.system == 2 for p in played])), 3),
    }


def _bootstrap(values: np.ndarray, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def advantage(
    challenger: Sequence[Played], incumbent: Sequence[Played], objective: Objective, seed: int = 0
) -> dict[str, Any]:
    """The challenger's paired advantage over the incumbent, in objective points per problem
    (100 = one problem in every problem), with its bootstrap 95% interval, and whether the
    incumbent rule lets it replace the incumbent."""
    diff = objective.points(challenger) - objective.points(incumbent)
    low, high = _bootstrap(diff, seed)
    wins = int(sum(c.correct and not i.correct for c, i in zip(challenger, incumbent, strict=True)))
    losses = int(
        sum(i.correct and not c.correct for c, i in zip(challenger, incumbent, strict=True))
    )
    tokens = [float(np.mean([p.tokens for p in side])) for side in (challenger, incumbent)]
    found = {
        "points": round(float(diff.mean()), 3),
        "ci95": [round(low, 3), round(high, 3)],
        "wins": wins,
        "losses": losses,
        "token_ratio": round(tokens[0] / max(tokens[1], 1e-9), 3),
    }
    if objective.kind == "budget" and tokens[1] > objective.budget_tokens >= tokens[0]:
        return found | {
            "replace": True,
            "why": f"the incumbent spends {tokens[1]:.0f} > the budget",
        }
    if objective.kind == "budget" and tokens[0] > objective.budget_tokens:
        return found | {
            "replace": False,
            "why": f"the selection spends {tokens[0]:.0f} > the budget",
        }
    replace = low > 0
    why = (
        f"its advantage's lower bound {low:+.2f} points is above 0"
        if replace
        else f"its advantage's lower bound {low:+.2f} points is not above 0"
    )
    return found | {"replace": replace, "why": why}


def signal_quality(
    fitter: Fitter, problems: Sequence[RecordedProblem], folds: int, programs: bool
) -> dict[str, dict[str, float | None]]:
    """How well each signal predicts that System 1's greedy answer is wrong: AUROC, and the
    Brier score of its probability of being right (raw doubts: 1 - doubt); calibrated
    models are scored out of fold."""
    wrong = [not _greedy_right(p) for p in problems]
    right = [not w for w in wrong]
    out: dict[str, dict[str, float | None]] = {}
    for name in RAW:
        doubts = [score(Recipe(name, None, DEFAULT_RULE), p, None) for p in problems]
        filled = [1.0 if d is None else d for d in doubts]
        out[name] = {
            "auroc": auroc(filled, wrong),
            "brier": round(brier([1 - d for d in filled], right), 4),
        }
    for features in [BASE_FEATURES] + ([tuple(FEATURES)] if programs else []):
        program = reads_program(features)
        p_right = [0.0] * len(problems)
        for held, train in out_of_fold(problems, folds, fitter.seed):
            model = fitter.calibration(features, train)
            for i in held:
                p_right[i] = model.probability(fitter.features(problems[i], program))
        name = "calibrated" + ("+program" if program else "")
        out[name] = {
            "auroc": auroc([1 - p for p in p_right], wrong),
            "brier": round(brier(p_right, right), 4),
        }
    return out


@dataclass
class Compiled:
    """What ``compile_recorded`` decided: the recipe written (the selection's or the
    incumbent's), the selection (fitted on every dev problem), and the report that says why."""

    recipe: Recipe
    selected: Recipe
    replaced: bool
    report: dict[str, Any]


def compile_recorded(
    problems: Sequence[RecordedProblem],
    incumbent: Recipe,
    objective: Objective,
    *,
    max_tokens: int | None,
    folds: int = 5,
    seed: int = 0,
    force: bool = False,
    grid: Sequence[Candidate] | None = None,
) -> Compiled:
    """Select a recipe on ``problems`` by cross-validation, estimate the selection by
    nested cross-validation, and keep ``incumbent`` unless the selection's paired advantage
    is surely positive (``force``: write the selection anyway)."""
    if len(problems) < 2 * folds:
        raise ValueError(f"{len(problems)} problems are too few for {folds}-fold selection")
    programs = all(p.program is not None for p in problems)
    if incumbent.program and not programs:
        raise ValueError(
            "the incumbent's calibrated estimator reads a greedy program: give the recorded "
            "programs too (--programs pot.jsonl)"
        )
    grid = list(grid if grid is not None else candidates(programs))
    fitter = Fitter(max_tokens, seed)
    winner, scored = select(fitter, grid, problems, objective, folds)
    selected = fitter.fit(winner, problems)
    held_out, chosen = nested(fitter, grid, problems, objective, folds)
    kept = fitter.play(incumbent, problems)
    versus = advantage(held_out, kept, objective, seed)
    replaced = force or versus["replace"]
    ranked = sorted(scored, key=lambda s: objective.rank(s.played), reverse=True)
    report = {
        "objective": objective.describe(),
        "problems": len(problems),
        "folds": folds,
        "candidates": len(grid),
        "selected": selected.label,
        "selected_cross_validated": next(s for s in scored if s.candidate == winner).summary(),
        "nested": estimate(held_out, seed) | {"winners": chosen},
        "incumbent": {"label": incumbent.label, **estimate(kept, seed)},
        "advantage": versus,
        "written": selected.label if replaced else incumbent.label,
        "why": "--force" if force and not versus["replace"] else versus["why"],
        "signals": signal_quality(fitter, problems, folds, programs),
        "top": [s.summary() for s in ranked[:10]],
    }
    return Compiled(selected if replaced else incumbent, selected, replaced, report)
