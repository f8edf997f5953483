"""A tuned program as an MLflow model, logged from code (MLflow's models-from-code): this
file is the model; it rebuilds the program from the program's JSON artifact when loaded,
so nothing is pickled and loading runs no code from the artifact.

    model = mlflow.pyfunc.load_model("models:/NAME/VERSION")
    model.predict(["What is 17 * 23?"])        # [{"answer": ..., "steps": [...], "usage": {...}}]
    model.unwrap_python_model().program         # the DSPy program itself

``model_config`` (set when logging, overridable when loading) says which model to run it on:
``model`` (default: the embedded local model), ``api_base``, ``adapter``, ``runtime``.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class ScaleModel(PythonModel):
    """Problems in, answers with their steps and usage out."""

    program: Any = None

    def load_context(self, context: Any) -> None:
        from scale import local
        from scale.programs import ProgramSpec

        config = dict(context.model_config or {})
        if config.get("runtime"):
            local.set_runtime(config["runtime"])
        options = {k: config[k] for k in ("model", "api_base", "adapter") if config.get(k)}
        self.program = ProgramSpec(program=context.artifacts["program"], **options).build()

    def predict(self, context, model_input, params=None):  # no hints: MLflow reads them
        problems = _problems(model_input)
        out = []
        for problem in problems:
            pred = self.program(problem=problem)
            out.append(
                {
                    "answer": pred.answer,
                    "steps": [s.to_dict() for s in pred.steps],
                    "usage": pred.usage.to_dict(),
                }
            )
        return out


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


mlflow.models.set_model(ScaleModel())
