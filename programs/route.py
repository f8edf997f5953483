"""Stage 3: pick System 1 or System 2 per step; the routing knobs ride in saved programs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from dspy.predict.parameter import Parameter

from scale.programs.calibrated import Calibration, CalibrationError
from scale.programs.estimators import check_estimator

MODES = ("threshold", "budget")
FORCED_LAST = 0.9  # the authors' score for the final step: tau >= 0.9 still means System 1
STATE_VERSION = 2


class RoutingError(ValueError):
    """Routing settings out of their domain."""


def route_threshold(difficulties: list[float | None], threshold: float) -> list[int]:
    """System 2 where the difficulty is strictly above ``threshold``; an unknown difficulty
    counts as 1.0 (hardest), so a threshold of 1 still keeps every step on System 1."""
    return [2 if (1.0 if d is None else d) > threshold else 1 for d in difficulties]


def route_budget(difficulties: list[float | None], fraction: float) -> list[int]:
    """System 2 for the hardest ``fraction`` of the steps by rank (rounded half up; unknown
    difficulties rank hardest, ties go to later steps)."""
    count = math.floor(fraction * len(difficulties) + 0.5)
    ranked = sorted(
        range(len(difficulties)),
        key=lambda i: (math.inf if difficulties[i] is None else difficulties[i], i),
        reverse=True,
    )
    hard = set(ranked[:count])
    return [2 if i in hard else 1 for i in range(len(difficulties))]


@dataclass
class Routing(Parameter):
    """The non-prompt knobs of SCALE, saved with the program and left alone by prompt
    optimizers: the estimator (``scale.programs.estimators``), the problem-level gate,
    the routing mode, the step threshold (tau) or budget fraction (q), and whether the last
    step is forced to 0.9.

    The gate rates the whole problem first: at or below ``gate`` it is answered by System 1
    at once; above it (or with no gate), it is decomposed and routed step by step, or, with
    ``decompose`` off, answered whole by System 2. ``calibration`` is the ``calibrated``
    estimator's fitted model (``scale.programs.calibrated``). Estimator ``"none"`` makes no rating
    calls: every step (and problem) counts as hardest, so threshold routing sends every step
    to System 2 below threshold 1 and to System 1 at 1 (``uniform-s2`` / ``uniform-s1``)."""

    estimator: str = "self"
    mode: str = "threshold"
    threshold: float = 0.5
    budget: float = 0.5
    gate: float | None = None
    decompose: bool = True
    force_last: bool = True
    calibration: dict[str, Any] | None = None  # the ``calibrated`` estimator's model

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        try:
            check_estimator(self.estimator)
        except ValueError as exc:
            raise RoutingError(str(exc)) from None
        if self.mode not in MODES:
            raise RoutingError(f"routing mode must be one of {MODES}, got {self.mode!r}")
        for name in ("threshold", "budget", "gate"):
            value = getattr(self, name)
            if value is None and name == "gate":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (0.0 <= value <= 1.0)
            ):
                raise RoutingError(f"{name} must be a number in [0, 1], got {value!r}")
        for name in ("decompose", "force_last"):
            if not isinstance(getattr(self, name), bool):
                raise RoutingError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.calibration is not None:
            try:
                Calibration.from_dict(self.calibration)
            except CalibrationError as exc:
                raise RoutingError(str(exc)) from None

    def route(self, difficulties: list[float | None]) -> list[int]:
        if self.mode == "budget":
            return route_budget(difficulties, self.budget)
        return route_threshold(difficulties, self.threshold)

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}

    def load_state(self, state: dict[str, Any]) -> Routing:
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            found = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise RoutingError(
                f"routing state version {found!r} is not the supported {STATE_VERSION}"
            )
        names = {f.name for f in fields(self)}
        unknown = set(state) - names - {"version"}
        if unknown:
            raise RoutingError(f"unknown routing settings: {sorted(unknown)}")
        candidate = Routing(**{k: v for k, v in state.items() if k in names})
        for name in names:
            setattr(self, name, getattr(candidate, name))
        return self

    def reset(self) -> None:
        """Prompt optimizers reset parameters between rounds; routing keeps its values."""
