"""Routing search: evaluate a grid of routing settings (estimator, problem gate, decompose
or not, threshold or budget) and System 2 knobs (cap, stop rule, confidence) on a
validation set.

Trials share DSPy's cache: a call whose request repeats across trials (a decomposition,
an estimator's replies, a System 2 sample with the same rollout id) is paid once, so a
k-point sweep costs far less than k evaluations; each trial records what it really spent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any

import dspy

from scale.harness.evaluate import Metric, evaluate
from scale.optimizers.metrics import CostAware, correctness
from scale.programs.route import RoutingError
from scale.programs.scale import SCALE
from scale.tracking import Tracker

DEFAULT_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))
SYSTEM2_KNOBS = ("samples", "stop", "confidence", "window", "greedy_first")


@dataclass
class Trial:
    """One setting (routing fields, and ``system2`` knobs) and what it scored."""

    settings: dict[str, Any]
    accuracy: float = 0.0
    ci95: tuple[float, float] = (0.0, 0.0)
    tokens_per_problem: float = 0.0
    system2_fraction: float = 0.0
    objective: float = float("-inf")
    spent_tokens: int = 0  # tokens really generated for this trial (cache misses only)
    total_tokens: int = 0  # what the trial's calls cost, cached or not
    errors: int = 0
    failure: str | None = None

    def routing(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k != "system2"}

    def label(self) -> str:
        s = self.settings
        gate = "-" if s.get("gate") is None else f"{s['gate']:g}"
        if not s.get("decompose", True):
            steps = "whole"
        else:
            knob = "threshold" if s.get("mode", "threshold") == "threshold" else "budget"
            steps = f"{knob}={s.get(knob, 0):g}"
        system2 = s.get("system2") or {}
        s2 = f" S2[{','.join(f'{k}={v}' for k, v in system2.items())}]" if system2 else ""
        return f"{s.get('estimator')} gate={gate} {steps}{s2}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"label": self.label()}


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
            + "; ".join(f"{t.label()}: {t.failure}" for t in trials[:3])
        )
    return min(ok, key=lambda t: (-t.objective, t.tokens_per_problem))


def ties(trials: Sequence[Trial], n: int) -> dict[str, int]:
    """How close the search was to a coin flip: trials tied with the best on the
    objective, and trials within one validation problem of its accuracy."""
    ok = [t for t in trials if t.failure is None]
    if not ok or not n:
        return {"tied": 0, "within_one_problem": 0}
    best = best_trial(ok)
    return {
        "tied": sum(t.objective == best.objective for t in ok),
        "within_one_problem": sum(best.accuracy - t.accuracy <= 1 / n + 1e-9 for t in ok),
    }


@dataclass
class Grid:
    """The settings a search tries; ``distinct()`` drops combinations that route alike."""

    estimators: Sequence[str] = ("self",)
    gates: Sequence[float | None] = (None,)
    decompose: Sequence[bool] = (True,)
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS
    mode: str = "threshold"
    system2: Sequence[dict[str, Any] | None] = field(default_factory=lambda: [None])

    def distinct(self, agreement_samples: int | None = None) -> list[dict[str, Any]]:
        """The combinations worth a trial, in grid order. With no decomposition the step
        threshold does not matter; without an estimate every problem and step counts as
        hardest, so a gate below 1 acts as no gate and thresholds below 1 route alike; a
        gate of 1 sends every problem to System 1 (only the estimator's answer matters),
        and System 2's knobs do not matter where it never runs. Agreement over
        ``agreement_samples`` replies scores only 0, 1/m, ..., (m-1)/m, so a gate or
        threshold acts as the highest of those at or below it."""
        knob = "threshold" if self.mode == "threshold" else "budget"
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for estimator, gate, decompose, value, system2 in product(
            self.estimators, self.gates, self.decompose, self.thresholds, self.system2
        ):
            if estimator == "none":
                gate = None if gate is None or gate < 1 else gate
                value = 0.0 if knob == "threshold" and value < 1 else value
            if estimator == "agreement" and agreement_samples:
                gate = _achieved(gate, agreement_samples)
                value = _achieved(value, agreement_samples) if knob == "threshold" else value
            all_system1 = gate is not None and gate >= 1
            if all_system1 or not decompose:
                value = 0.0
            if all_system1 or (knob == "threshold" and value >= 1 and decompose):
                system2 = None
            settings = {
                "estimator": estimator,
                "gate": gate,
                "decompose": True if all_system1 else decompose,
                "mode": self.mode,
                knob: float(value),
            }
            if system2:
                settings["system2"] = dict(system2)
            key = repr(sorted(settings.items(), key=lambda kv: kv[0]))
            if key not in seen:
                seen.add(key)
                out.append(settings)
        return out


def _achieved(cut: float | None, m: int) -> float | None:
    """The highest agreement score of m replies at or below ``cut`` (below 1)."""
    if cut is None or cut >= 1:
        return cut
    return max(k / m for k in range(m) if k / m <= cut + 1e-9)


def apply_settings(program: SCALE, settings: dict[str, Any], base: dict[str, Any]) -> None:
    """Put a trial's routing and System 2 knobs on ``program`` (``base``: the routing state
    the rest of the fields come from)."""
    routing = {k: v for k, v in settings.items() if k != "system2"}
    program.routing.load_state({**base, **routing})
    for knob, value in (settings.get("system2") or {}).items():
        if knob not in SYSTEM2_KNOBS:
            raise RoutingError(f"unknown System 2 knob {knob!r}")
        setattr(program.system2, knob, value)
    _ = program.system2.stop_rule  # raises on an invalid combination


def search_routing(
    program: SCALE,
    valset: list[dspy.Example],
    grid: Grid,
    *,
    objective: CostAware | None = None,
    metric: Metric = correctness,
    threads: int = 1,
    tracker: Tracker | None = None,
    progress: bool = True,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Evaluate every distinct setting of ``grid`` on ``valset`` and return the trials in
    grid order; the program's own settings are restored afterwards. A trial that fails is
    recorded and the search goes on."""
    objective = objective or CostAware()
    original = program.routing.dump_state()
    system2 = {k: getattr(program.system2, k) for k in SYSTEM2_KNOBS}
    trials: list[Trial] = []
    try:
        for settings in grid.distinct(getattr(program, "agreement_samples", None)):
            trial = Trial(settings)
            try:
                apply_settings(program, settings, original)
            except (RoutingError, ValueError) as exc:
                trial.failure = str(exc)
            else:
                _run_trial(program, valset, trial, objective, metric, threads, progress)
            finally:
                for knob, value in system2.items():
                    setattr(program.system2, knob, value)
            trials.append(trial)
            if tracker is not None:
                _log_trial(tracker, trial, len(trials))
            if on_trial is not None:
                on_trial(trial)
    finally:
        program.routing.load_state(original)
    return trials


def _log_trial(tracker: Tracker, trial: Trial, number: int) -> None:
    with tracker.child(f"trial {number}: {trial.label()}") as child:
        child.params(trial.settings)
        child.metrics(
            {k: v for k, v in trial.to_dict().items() if k not in ("settings", "failure", "label")}
        )
        if trial.failure:
            child.text(trial.failure, "failure.txt")


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
            program, valset, threads=threads, metric=metric, progress=progress, desc=trial.label()
        )
    except Exception as exc:  # a broken trial is recorded, the search continues
        trial.failure = f"{type(exc).__name__}: {exc}"
        return
    trial.accuracy = summary.accuracy
    trial.ci95 = tuple(summary.ci95)
    trial.tokens_per_problem = summary.tokens_per_problem
    trial.system2_fraction = summary.system2_fraction
    trial.errors = summary.errors
    trial.spent_tokens = sum(r.usage.get("spent_tokens", 0) for r in rows)
    trial.total_tokens = sum(r.usage.get("total_tokens", 0) for r in rows)
    trial.objective = objective.objective(summary.accuracy, summary.tokens_per_problem)
