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


def test_a_profile_resolves_its_runtime_once_when_built(monkeypatch) -> None:
    from scale.models import local
    from scale.models.lm import TINY_MODEL
    from scale.programs import ProgramSpec
    from scale.programs.io import fingerprint

    monkeypatch.delenv("SCALE_LOCAL_RUNTIME", raising=False)
    local.set_runtime(None)
    program = ProgramSpec(method="cot", model=TINY_MODEL, runtime="recorded").build()
    (profile,) = program.profiles()
    try:
        local.set_runtime("server")  # the process default moves; the built program does not
        assert profile.runtime == "recorded"
        assert profile.lm.kwargs["api_base"] == "local://recorded"
        assert fingerprint(program)["systems"]["system2"]["runtime"] == "recorded"
        assert "runtime" not in profile.describe()  # saved programs do not carry it
        default = ProgramSpec(method="cot", model=TINY_MODEL).build().profiles()[0]
        assert default.runtime == "server"  # none given: the default at build time
    finally:
        local.set_runtime(None)


def test_a_runtime_is_for_local_models_only() -> None:
    from scale.models.packaged import ModelError
    from scale.programs import SystemProfile

    with pytest.raises(ValueError, match="runtime is for local/ models"):
        SystemProfile(model="openai/x", runtime="server")
    with pytest.raises(ModelError, match="must be one of"):
        SystemProfile(model="local/smollm2-135m", runtime="gpu")


def test_the_recorded_runtime_needs_its_store_installed(monkeypatch) -> None:
    from litellm.llms.custom_llm import CustomLLMError

    from scale.models import local

    monkeypatch.setattr(local, "_recordings", None)
    with pytest.raises(CustomLLMError, match="no recordings installed"):
        local.LlamaCppProvider._recorded("local/x", [], {}, strict=True)
