"""MLflow tracking that never takes a run down: if the store is unusable, work continues
and one warning says so."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "scale"
PROBE_SECONDS = 3.0


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flat(value, f"{name}.")
        elif value is not None:
            out[name] = str(value)[:500]
    return out


def _numbers(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _numbers(value, f"{name}.")
        elif isinstance(value, (list, tuple)) and len(value) == 2 and key == "ci95":
            out[f"{name}_low"], out[f"{name}_high"] = float(value[0]), float(value[1])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def log_program(
    tracker: Tracker, path: str | Path, *, model: str, registered_name: str | None = None
) -> str | None:
    """Log the program at ``path`` as an MLflow model whose loader is the installed
    ``scale.tracking.mlflow_model`` (the artifact holds the JSON and the model's name, no
    code and no pickle), registered as ``registered_name`` if given; returns its
    ``models:/`` URI."""
    if tracker._mlflow is None:
        return None
    mlflow = tracker._mlflow
    from scale import __version__

    try:
        info = mlflow.pyfunc.log_model(
            name="model",
            loader_module="scale.tracking.mlflow_model",
            data_path=str(path),
            model_config={"model": model},
            pip_requirements=[f"scale-dspy=={__version__}"],
            registered_model_name=registered_name,
        )
    except Exception as exc:
        _disable(f"logging the program as an MLflow model failed ({type(exc).__name__}: {exc})")
        tracker._mlflow = None
        return None
    return info.model_uri


class Tracker:
    """One MLflow run (or a no-op when tracking is off or broken)."""

    def __init__(self, mlflow: Any | None):
        self._mlflow = mlflow

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def _safely(self, action: str, *args: Any, **kwargs: Any) -> None:
        if self._mlflow is None:
            return
        try:
            getattr(self._mlflow, action)(*args, **kwargs)
        except Exception as exc:
            _disable(f"{action} failed ({type(exc).__name__}: {exc})")
            self._mlflow = None

    def params(self, params: dict[str, Any]) -> None:
        self._safely("log_params", _flat(params))

    def metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self._safely("log_metrics", _numbers(metrics), step=step)

    def artifact(self, path: str | Path) -> None:
        if Path(path).exists():
            self._safely("log_artifact", str(path))

    def text(self, text: str, name: str) -> None:
        self._safely("log_text", text, name)

    @contextlib.contextmanager
    def child(self, name: str) -> Iterator[Tracker]:
        """A nested run (one optimizer trial)."""
        if self._mlflow is None:
            yield Tracker(None)
            return
        try:
            ctx = self._mlflow.start_run(run_name=name, nested=True)
            ctx.__enter__()
        except Exception as exc:
            _disable(f"nested run failed ({type(exc).__name__}: {exc})")
            yield Tracker(None)
            return
        failed = False
        try:
            yield Tracker(self._mlflow)
        except BaseException:
            failed = True
            raise
        finally:
            with contextlib.suppress(Exception):
                ctx.__exit__(*(sys.exc_info() if failed else (None, None, None)))


def _disable(reason: str) -> None:
    print(
        f"scale: MLflow tracking unavailable, continuing without it: {reason}",
        file=sys.stderr,
        flush=True,
    )


def _unreachable(uri: str, timeout: float = PROBE_SECONDS) -> str | None:
    """Why an HTTP tracking server cannot be used (it does not answer within ``timeout``
    seconds), or None; other stores are checked when first used."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # it answers (an error status is still an answer)
    except (OSError, ValueError) as exc:
        return f"{uri} does not answer ({type(exc).__name__}: {exc})"
    return None


@contextlib.contextmanager
def run(
    name: str,
    *,
    enabled: bool = True,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    params: dict[str, Any] | None = None,
    trace: bool = True,
) -> Iterator[Tracker]:
    """An MLflow run named ``name`` in ``experiment`` on ``tracking_uri`` (default: the
    SQLite store ``mlflow.db`` in the working folder). With ``trace``, every program call
    inside is traced by MLflow's DSPy integration (module tree, each LM call, latency, and
    the program's token usage as ``scale`` counts it)."""
    if not enabled:
        yield Tracker(None)
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # a store that stops answering mid-run fails the logging call soon, not after minutes
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    problem = _unreachable(uri)
    if problem:
        _disable(problem)
        yield Tracker(None)
        return
    try:
        import mlflow

        for noisy in ("alembic", "mlflow"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment or DEFAULT_EXPERIMENT)
        ctx = mlflow.start_run(run_name=name)
        ctx.__enter__()
    except Exception as exc:
        _disable(f"{type(exc).__name__}: {exc}")
        yield Tracker(None)
        return
    tracker = Tracker(mlflow)
    if params:
        tracker.params(params)
    if trace:
        _autolog(True)
    status = "FINISHED"
    try:
        yield tracker
    except BaseException:
        status = "KILLED" if sys.exc_info()[0] is KeyboardInterrupt else "FAILED"
        raise
    finally:
        if trace:
            _autolog(False)
        with contextlib.suppress(Exception):
            mlflow.end_run(status=status)


def _autolog(on: bool) -> None:
    """MLflow's DSPy tracing on or off (our own runs log compiles and evaluations)."""
    try:
        import mlflow.dspy

        mlflow.dspy.autolog(
            log_traces=on,
            log_traces_from_eval=on,
            log_traces_from_compile=on,  # the compile's trials are program calls too
            log_compiles=False,
            log_evals=False,
            disable=not on,
            silent=True,
        )
    except Exception as exc:
        _disable(f"tracing unavailable ({type(exc).__name__}: {exc})")
