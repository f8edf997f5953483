"""The package's layers: old module paths (before the layers) still import, as the same
module objects; the layers themselves are import-linter's contract (``make lint``)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import scale


@pytest.mark.parametrize("old", sorted(scale.MOVED))
def test_an_old_module_path_is_the_moved_module(old: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(scale.MOVED[old])


def test_old_paths_import_in_a_fresh_process_with_their_names() -> None:
    # what a logged MLflow model or a user's script of 0.2 does first
    code = (
        "from scale.mlflow_model import load; from scale.lm import make_lm; "
        "from scale.verify import is_equivalent; from scale.optimizers.results import ResultRow; "
        "from scale.bench import run_bench; import scale.models.lm as m; import scale.lm; "
        "assert make_lm is m.make_lm and scale.lm is m; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_an_unknown_module_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("scale.no_such_module")
