"""Committed reports regenerate exactly from the data written beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scale.bench.report import estimators_markdown

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


@pytest.mark.parametrize(
    "folder",
    ["round2-gsm8k-server/estimators-steps", "round2-math500-l13/estimators-problems-confidence"],
)
def test_an_estimator_report_regenerates_from_its_json(folder):
    report = json.loads((RESULTS / folder / "estimators.json").read_text())
    assert estimators_markdown(report) == (RESULTS / folder / "estimators.md").read_text()
