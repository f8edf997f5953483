"""The DSPy patches' guard: installed once, a missing target refused by name, another DSPy
series warned about."""

from __future__ import annotations

import dspy
import pytest
from dspy.clients import execution

from scale.models import patches


def test_applying_twice_wraps_once() -> None:
    patches.apply()
    once = execution._delay
    patches.apply()
    assert execution._delay is once and getattr(once, "_capped", False)


def test_a_missing_target_is_refused_by_name(monkeypatch) -> None:
    monkeypatch.delattr(execution, "_delay")
    with pytest.raises(RuntimeError, match=r"no dspy\.clients\.execution\._delay"):
        patches.apply()


def test_another_dspy_series_is_warned_about(monkeypatch) -> None:
    monkeypatch.setattr(dspy, "__version__", "9.0.0")
    with pytest.warns(UserWarning, match="tested on DSPy 3.4"):
        patches.apply()
