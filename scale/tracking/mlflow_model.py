"""A tuned program as an MLflow model whose code is the installed package's, not the artifact's.

``scale compile`` logs a program with ``loader_module="scale.tracking.mlflow_model"``: the artifact
holds data only (the program's JSON, validated on load as any program file, and a config
naming the model), and loading imports this module from the installed ``scale-dspy``:

    model = mlflow.pyfunc.load_model("models:/NAME/VERSION")
    model.predict(["What is 17 * 23?"])   # [{"answer": ..., "steps": [...], "usage": {...}}]
    model.get_raw_model()                  # the DSPy program itself

What a loaded model trusts: ``mlflow.pyfunc.load_model`` follows the artifact's ``MLmodel``
file, and a tampered one can name code to import (MLflow's rule: loading a model runs
code), so load an artifact you did not log yourself with ``load(uri)`` (what ``--program
models:/...`` does): it reads only the program JSON, with this module's code. Neither path
lets the artifact choose an endpoint: ``api_base`` comes from the loading process (``load``'s
argument, or litellm's environment variables), never from the model's config.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

CONFIG_KEYS = ("model", "adapter", "runtime")  # what a logged config may set


class ScaleModel:
    """Problems in, answers with their steps and usage out (pyfunc's ``predict``)."""

    def __init__(self, program: Any):
        self.program = program

    def get_raw_model(self) -> Any:
        return self.program

    def predict(self, model_input: Any, params: dict | None = None) -> list[dict[str, Any]]:
        out = []
        for problem in _problems(model_input):
            pred = self.program(problem=problem)
            out.append(
                {
                    "answer": pred.answer,
                    "steps": [s.to_dict() for s in pred.steps],
                    "usage": pred.usage.to_dict(),
                }
            )
        return out


def load(
    ref: str | Path,
    *,
    model: str | None = None,
    adapter: str | None = None,
    api_base: str | None = None,
    runtime: str | None = None,
) -> ScaleModel:
    """The program at ``ref`` (a program file, ``models:/NAME/VERSION`` or ``runs:/ID/model``)
    as a model; only its JSON is read. ``api_base``: the endpoint (None: litellm's default
    for the model's provider)."""
    from scale.programs import ProgramSpec

    options = {"model": model, "adapter": adapter, "api_base": api_base, "runtime": runtime}
    spec = ProgramSpec(program=str(ref), **{k: v for k, v in options.items() if v})
    return ScaleModel(spec.build())


def _load_pyfunc(data_path: str, model_config: dict | None = None) -> ScaleModel:
    """MLflow's loader-module entry point: the program JSON in ``data_path``."""
    config = dict(model_config or {})
    ignored = sorted(set(config) - set(CONFIG_KEYS))
    if ignored:
        warnings.warn(
            f"model config {', '.join(ignored)} ignored: a logged model cannot choose its "
            "endpoint; pass api_base to scale.tracking.mlflow_model.load, or set it in the "
            "environment",
            stacklevel=2,
        )
    path = Path(data_path)
    found = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if len(found) != 1:
        raise ValueError(f"{data_path}: expected one program JSON file, found {len(found)}")
    return load(found[0], **{k: config[k] for k in CONFIG_KEYS if config.get(k)})


def _problems(model_input: Any) -> list[str]:
    """A problem, a list of them, ``{"problem": ...}`` or a DataFrame with a ``problem``
    column (or a single column)."""
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, dict):
        value = model_input.get("problem")
        return [value] if isinstance(value, str) else list(value or [])
    if hasattr(model_input, "columns"):
        column = "problem" if "problem" in model_input.columns else model_input.columns[0]
        return [str(v) for v in model_input[column]]
    return [str(v) for v in model_input]
