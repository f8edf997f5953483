"""Routing search: evaluate a grid of (estimator, decomposition gate, threshold or budget)
on a validation set, reusing cached decomposition and difficulty calls across trials."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from itertools import product
from typing import Any

import dspy
from scale.optimizers.evaluate import Metric, evaluate
from scale.optimizers.metrics import CostAware, correctness
from scale.programs.route import NO_ESTIMATE, RoutingError
from scale.programs.scale import SCALE

from scale.tracking import Tracker

DEFAULT_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass
class Trial:
    """One routing setting and what it scored on the validation set."""

    estimator: str
    decompose_threshold: float | None
    mode: str
    value: float  # the threshold, or the budget fraction
    accuracy: float = 0.0
    ci95: tuple[float, float] = (0.0, 0.0)
    tokens_per_problem: float = 0.0
    system2_fraction: float = 0.0
    objective: float = float("-inf")
    spent_tokens: int = 0  # tokens really generated for this trial (cache misses only)
    errors: int = 0
    failure: str | None = None

    def settings(self) -> dict[str, Any]:
        knob = "threshold" if self.mode == "threshold" else "budget"
        return {
            "estimator": self.estimator,
            "decompose_threshold": self.decompose_threshold,
            "mode": self.mode,
            knob: self.value,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pareto_front(trials: Sequence[Trial]) -> list[Trial]:
    """Trials no other trial beats on both accuracy (higher) and tokens (lower)."""
    ok = [t for t in trials if t.failure is None]
    front = [
        t
        for t in ok
        if not any(
            (o.accuracy >= t.accuracy and o.tokens_per_problem <= t.tokens_per_problem)
            and (o.accuracy > t.accuracy or o.tokens_per_problem < t.tokens_per_problem)
            for o in ok
        )
    ]
    return sorted(front, key=lambda t: t.tokens_per_problem)


def best_trial(trials: Sequence[Trial]) -> Trial:
    """Highest objective; ties go to fewer tokens, then to the earlier trial."""
    ok = [t for t in trials if t.failure is None]
    if not ok:
        raise RuntimeError(
            "every routing trial failed: "
            + "; ".join(f"{t.settings()}: {t.failure}" for t in trials[:3])
        )
    return min(ok, key=lambda t: (-t.objective, t.tokens_per_problem))


def search_routing(
    program: SCALE,
    valset: list[dspy.Example],
    *,
    estimators: Sequence[str] = ("self",),
    decompose_thresholds: Sequence[float | None] = (None,),
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    mode: str = "threshold",
    objective: CostAware | None = None,
    metric: Metric = correctness,
    threads: int = 1,
    tracker: Tracker | None = None,
    progress: bool = True,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Evaluate every distinct combination on ``valset`` (see ``_distinct_grid``) and return
    the trials in grid order.

    Trials share DSPy's cache, so decomposition and difficulty calls (which do not depend on
    the threshold) are paid once per estimator and gate; ``spent_tokens`` counts what each
    trial really generated. A trial that fails is recorded and the search goes on."""
    objective = objective or CostAware()
    original = program.routing.dump_state()
    trials: list[Trial] = []
    try:
        grid = _distinct_grid(estimators, decompose_thresholds, mode, thresholds)
        for estimator, gate, value in grid:
            trial = Trial(estimator, gate, mode, float(value))
            try:
                program.routing.load_state({**original, **trial.settings()})
            except RoutingError as exc:
                trial.failure = str(exc)
            else:
                _run_trial(program, valset, trial, objective, metric, threads, progress)
            trials.append(trial)
            if tracker is not None:
                with tracker.child(f"trial {len(trials)}") as child:
                    child.params(trial.settings())
                    child.metrics(
                        {
                            k: v
                            for k, v in trial.to_dict().items()
                            if k not in ("estimator", "mode", "failure")
                        }
                    )
                    if trial.failure:
                        child.text(trial.failure, "failure.txt")
            if on_trial is not None:
                on_trial(trial)
    finally:
        program.routing.load_state(original)
    return trials


def _distinct_grid(
    estimators: Sequence[str],
    gates: Sequence[float | None],
    mode: str,
    values: Sequence[float],
) -> list[tuple[str, float | None, float]]:
    """The combinations worth a trial, in grid order. A gate of 1 never decomposes, so
    estimator and threshold do not matter; without an estimate, a gate below 1 always
    decomposes (no gate) and every threshold below 1 routes alike (0)."""
    grid: list[tuple[str, float | None, float]] = []
    seen: set[tuple] = set()
    for estimator, gate, value in product(estimators, gates, values):
        if estimator == NO_ESTIMATE:
            gate = None if gate is None or gate < 1 else gate
            value = 0.0 if mode == "threshold" and value < 1 else value
        key = ("undecomposed",) if gate is not None and gate >= 1 else (estimator, gate, value)
        if key not in seen:
            seen.add(key)
            grid.append((estimator, gate, value))
    return grid


def _run_trial(
    program: SCALE,
    valset: list[dspy.Example],
    trial: Trial,
    objective: CostAware,
    metric: Metric,
    threads: int,
    progress: bool,
) -> None:
    try:
        rows, summary = evaluate(
            program, valset, threads=threads, metric=metric, progress=progress, desc=_label(trial)
        )
    except Exception as exc:  # a broken trial is recorded, the search continues
        trial.failure = f"{type(exc).__name__}: {exc}"
        return
    trial.accuracy = summary.accuracy
    trial.ci95 = tuple(summary.ci95)
    trial.tokens_per_problem = summary.tokens_per_problem
    trial.system2_fraction = summary.system2_fraction
    trial.errors = summary.errors
    trial.spent_tokens = sum((r.get("usage") or {}).get("spent_tokens", 0) for r in rows)
    trial.objective = objective.objective(summary.accuracy, summary.tokens_per_problem)


def _label(trial: Trial) -> str:
    gate = "-" if trial.decompose_threshold is None else f"{trial.decompose_threshold:g}"
    return f"{trial.estimator} gate={gate} {trial.mode}={trial.value:g}"
