"""The ``calibrated`` estimator's model: P(System 1's greedy answer is right) from what the
program already has at the gate, as plain numbers a program file can carry.

``gate_features`` reads one greedy reply (and, for a model that uses them, the greedy
program written for the same problem); ``Calibration`` is a logistic model over a subset of
``FEATURES``, standardized, fitted by ``scale.optimizers.calibration``. It loads from JSON
with every field checked and bounded: no pickle, no code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from scale.grading.calc import check
from scale.grading.verify import is_equivalent
from scale.programs.logprobs import doubt
from scale.programs.records import Sample

FEATURES: dict[str, str] = {
    "doubt_lowest": "1 - the reply's probability over its least confident window",
    "doubt_mean": "1 - its geometric-mean token probability",
    "doubt_total": "1 - its probability per 100 tokens",
    "no_logprobs": "1 when the reply carries no token logprobs",
    "log_length": "log(1 + the reply's completion tokens)",
    "cap_hit": "1 when the reply used its whole max_tokens",
    "unparsed": "1 when the reply could not be read as asked",
    "check_mismatch": "1 when the reply's calculation gives another value than its answer",
    "program_agrees": "1 when the greedy program's answer equals the reply's",
    "program_silent": "1 when the program or the reply gave no answer",
}
PROGRAM_FEATURES = frozenset({"program_agrees", "program_silent"})  # cost one program call
MAX_WEIGHT = 1e4  # bound on every number of a loaded model


def reads_program(features: tuple[str, ...] | list[str]) -> bool:
    """Whether a model over ``features`` needs the greedy program (one more call)."""
    return bool(PROGRAM_FEATURES & set(features))


def gate_features(
    reply: Sample, program: Sample | None = None, max_tokens: int | None = None
) -> dict[str, float]:
    """``FEATURES`` of System 1's greedy ``reply`` (program ones only with a ``program``)."""
    tokens = reply.logprobs or []
    doubts = {over: doubt(tokens, over) for over in ("lowest", "mean", "total")}
    values = {f"doubt_{over}": 1.0 if d is None else d for over, d in doubts.items()}
    values |= {
        "no_logprobs": float(doubts["mean"] is None),
        "log_length": math.log1p(max(reply.completion_tokens, 0)),
        "cap_hit": float(bool(max_tokens) and reply.completion_tokens >= max_tokens),
        "unparsed": float(reply.fallback is not None),
        "check_mismatch": float(
            bool(reply.calculation) and check(reply.calculation, reply.answer).status == "mismatch"
        ),
    }
    if program is not None:
        silent = not reply.answer or not program.answer
        values["program_silent"] = float(silent)
        values["program_agrees"] = float(not silent and is_equivalent(reply.answer, program.answer))
    return values


class CalibrationError(ValueError):
    """A calibration that is not a valid, bounded model."""


@dataclass(frozen=True)
class Calibration:
    """A logistic model: P(right) = sigmoid(intercept + sum coef * (x - center) / scale)
    over ``features`` (names from ``FEATURES``), with the L2 penalty it was fitted with and
    the number of problems it saw."""

    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    l2: float
    n: int

    def __post_init__(self) -> None:
        names = self.features
        if not names or len(set(names)) != len(names) or not set(names) <= set(FEATURES):
            raise CalibrationError(
                f"calibration features must be distinct names from {sorted(FEATURES)}, "
                f"got {list(names)[:12]!r}"
            )
        for field in ("center", "scale", "coef"):
            if len(getattr(self, field)) != len(names):
                raise CalibrationError(f"calibration {field} needs one number per feature")
        numbers = [*self.center, *self.scale, *self.coef, self.intercept, self.l2]
        if not all(_bounded(v) for v in numbers):
            raise CalibrationError(f"calibration numbers must be finite, |x| <= {MAX_WEIGHT:g}")
        if not all(s > 0 for s in self.scale) or self.l2 < 0:
            raise CalibrationError("calibration scales must be > 0 and its l2 >= 0")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise CalibrationError("calibration n must be a count")

    @property
    def uses_program(self) -> bool:
        return reads_program(self.features)

    def contributions(self, values: dict[str, float]) -> dict[str, float]:
        """Each feature's term in the log-odds of being right."""
        return {
            name: c * (values[name] - m) / s
            for name, m, s, c in zip(self.features, self.center, self.scale, self.coef, strict=True)
        }

    def probability(self, values: dict[str, float]) -> float:
        """P(System 1's answer is right) for a reply with these feature ``values``."""
        z = self.intercept + sum(self.contributions(values).values())
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            k: list(getattr(self, k)) for k in ("features", "center", "scale", "coef")
        }

    @classmethod
    def from_dict(cls, data: Any) -> Calibration:
        """A calibration from its JSON form, every field checked (``CalibrationError``)."""
        expected = {"features", "center", "scale", "coef", "intercept", "l2", "n"}
        if not isinstance(data, dict) or set(data) != expected:
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise CalibrationError(f"a calibration has exactly {sorted(expected)}, got {found}")
        lists = {}
        for key in ("features", "center", "scale", "coef"):
            value = data[key]
            if not isinstance(value, list) or len(value) > len(FEATURES):
                raise CalibrationError(
                    f"calibration {key} must be a list of at most {len(FEATURES)}"
                )
            lists[key] = tuple(value)
        if not all(isinstance(f, str) for f in lists["features"]):
            raise CalibrationError("calibration features must be names")
        numbers = [*lists["center"], *lists["scale"], *lists["coef"], data["intercept"], data["l2"]]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            raise CalibrationError("calibration weights must be numbers")
        return cls(**lists, intercept=float(data["intercept"]), l2=float(data["l2"]), n=data["n"])


def _bounded(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= MAX_WEIGHT
