"""The metric every evaluation and optimizer scores with."""

from __future__ import annotations

from typing import Any

from scale.grading.verify import is_equivalent


def correctness(example: Any, pred: Any, trace: Any = None) -> float:
    """1.0 when the predicted final answer is mathematically equivalent to the gold one
    (a DSPy metric: ``example.answer`` against ``pred.answer``)."""
    return float(is_equivalent(str(example.answer), str(getattr(pred, "answer", "") or "")))
