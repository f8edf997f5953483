"""Every notebook runs top to bottom on a small model and small sizes.

By default the notebooks run on the tiny packaged llama.cpp model. With
``SCALE_TEST_API_BASE=http://127.0.0.1:PORT/v1`` they run against an OpenAI-compatible server
instead, e.g. ``python -m scale.bench.fakeserver --port PORT --delay 0.01`` during development.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from scale.models.lm import TINY_MODEL

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("01_quickstart.ipynb", "02_compile_and_track.ipynb", "03_threshold_tradeoff.ipynb")
# Each notebook reads these at the top; a handful of LM calls per problem.
SMALL = {
    "SCALE_N": "2",
    "SCALE_MAX_TOKENS": "96",
    "SCALE_THRESHOLDS": "0,0.5,1",
    "SCALE_ESTIMATORS": "self",
    "SCALE_VOTE_SAMPLES": "3",
    "SCALE_PROMPT_OPTIMIZER": "bootstrap",
}
CELL_TIMEOUT = 1800  # seconds; the tiny model on a slow CI machine


def test_every_notebook_is_executed_here():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_reads_model_and_size_from_the_environment(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "Outputs below" in first_md.source
    for variable in ("SCALE_MODEL", "SCALE_API_BASE", "SCALE_N", "Outputs below"):
        assert variable in first_code.source, variable


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """Environment of the notebook kernel: this interpreter, small sizes, a fresh DSPy cache."""
    # A python3 kernelspec running this interpreter, found before any user or system one.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3 (test)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)
    api_base = os.environ.get("SCALE_TEST_API_BASE")
    if api_base:
        monkeypatch.setenv("SCALE_MODEL", "openai/fake")
        monkeypatch.setenv("SCALE_API_BASE", api_base)
    else:
        monkeypatch.setenv("SCALE_MODEL", TINY_MODEL)
        monkeypatch.delenv("SCALE_API_BASE", raising=False)
    results = NOTEBOOK_DIR.parent / "bench/results"
    monkeypatch.setenv("SCALE_BENCH", str(results / "round2-gsm8k-server"))
    monkeypatch.setenv("SCALE_RECORDED", str(results / "round2-math500-l13"))
    monkeypatch.setenv("SCALE_PROGRAMS", str(results / "round3-programs/math500-l13/pot.jsonl"))
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.mark.local_model
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, kernel_env):
    before = sorted(NOTEBOOK_DIR.iterdir())
    copy = kernel_env / name
    shutil.copy(NOTEBOOK_DIR / name, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(kernel_env)}},
    )
    client.execute()  # raises CellExecutionError (with the traceback) if a cell raises
    errors = [
        output
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
    assert sorted(NOTEBOOK_DIR.iterdir()) == before, "the notebook wrote outside its work dir"
