"""Saving and loading programs as JSON (never pickle), written atomically.

A program file is untrusted input: someone else may have tuned it. What it may hold is
fixed here (``read_program`` refuses anything else, with the reason): per predictor its
instructions, field descriptions and demos; the routing; the structure and the systems'
knobs within stated bounds; and informational records (trials, ids, report). It never
chooses a model, an endpoint, a key or a per-call config: those come from the caller.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import dspy

from scale.programs.profiles import KINDS

FORMAT = 2
MAX_FILE_BYTES = 20 << 20
MAX_DEMOS = 16
MAX_TEXT = 50_000  # characters in one instruction, description or demo value
MAX_PROMPT_TEXT = 64_000  # characters of one predictor's instructions and demos together

# what a saved program may set on each system profile, with its bounds
PROFILE_KNOBS: dict[str, tuple[type, Any]] = {
    "kind": (str, KINDS),
    "max_tokens": (int, (1, 8192)),
    "samples": (int, (1, 16)),
    "stop": (str, ("fixed", "adaptive", "window")),
    "confidence": (float, (0.5, 0.999)),
    "window": (int, (1, 16)),
    "greedy_first": (bool, None),
    "sample_temperature": (float, (0.0, 1.5)),
    "adapter": (str, ("native", "chat", "json")),
}
STRUCTURE: dict[str, tuple[type, Any]] = {
    "k": (int, (1, 16)),
    "max_subproblems": (int, (1, 12)),
    "batched": (bool, None),
    "agreement_samples": (int, (2, 16)),
}
PREDICTOR_KEYS = {"traces", "train", "demos", "signature", "lm", "fields"}
HEADER_KEYS = {"format", "method", "structure", "profiles"}


class ProgramFileError(ValueError):
    """A saved program that cannot be used; the message says why."""


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once, at import


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and a rename (no torn files), with
    the permissions a plain ``open`` would give it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private (0600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_program(program: dspy.Module, path: str | Path, **info: Any) -> Path:
    """Save prompts, demos and routing of ``program`` with a header that says how to rebuild
    it (method, structure, the systems' knobs and the models it was tuned with) plus any
    ``info`` (e.g. the optimizer's trial table, the ids it was tuned on)."""
    path = Path(path)
    if path.suffix != ".json":
        raise ProgramFileError(f"programs are saved as .json, got {path}")
    state = program.dump_state()
    for name, _ in program.named_predictors():
        state[name]["lm"] = None  # a saved program never carries a model
    profiles = {
        f"system{i}": getattr(program, f"system{i}").describe()
        for i in (1, 2)
        if hasattr(program, f"system{i}")
    }
    state["scale"] = {
        "format": FORMAT,
        "method": program.method,
        "structure": getattr(program, "structure", dict)(),
        "profiles": {
            name: {k: v for k, v in profile.items() if k in PROFILE_KNOBS}
            for name, profile in profiles.items()
        },
        "tuned_with": {
            name: {"model": profile["model"], "adapter": profile["adapter"]}
            for name, profile in profiles.items()
        },
        **info,
    }
    state["metadata"] = {"dependency_versions": {"dspy": dspy.__version__}}
    return atomic_write_text(path, json.dumps(state, indent=2, default=str))


def _bounded(where: str, value: Any, kind: type, bounds: Any) -> None:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ProgramFileError(f"{where} must be a {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ProgramFileError(f"{where} must be finite, got {value!r}")
    if isinstance(bounds, tuple) and bounds and isinstance(bounds[0], str):
        if value not in bounds:
            raise ProgramFileError(f"{where} must be one of {bounds}, got {value!r}")
    elif bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ProgramFileError(f"{where} must be within {bounds[0]}..{bounds[1]}, got {value!r}")


def _check_knobs(where: str, values: Any, allowed: dict[str, tuple[type, Any]]) -> None:
    if not isinstance(values, dict):
        raise ProgramFileError(f"{where} must be an object")
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ProgramFileError(f"{where}: unknown settings {unknown}")
    for key, value in values.items():
        _bounded(f"{where}.{key}", value, *allowed[key])


def _text(where: str, value: Any) -> None:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ProgramFileError(f"{where} must be text of at most {MAX_TEXT} characters")


def _check_predictor(where: str, state: Any) -> None:
    if not isinstance(state, dict):
        raise ProgramFileError(f"{where} must be an object")
    unknown = sorted(set(state) - PREDICTOR_KEYS)
    if unknown:
        raise ProgramFileError(
            f"{where}: unknown keys {unknown}; a program file may hold instructions, field "
            "descriptions and demos only"
        )
    if state.get("lm") is not None:
        raise ProgramFileError(
            f"{where}: a program file may not choose a model (it has an 'lm' entry); the "
            "model comes from --model"
        )
    if state.get("fields"):
        raise ProgramFileError(f"{where}: per-field decision state is not supported")
    signature = state.get("signature")
    if not isinstance(signature, dict) or set(signature) - {"instructions", "fields"}:
        raise ProgramFileError(f"{where}.signature must hold instructions and fields only")
    _text(f"{where}.signature.instructions", signature.get("instructions"))
    for i, item in enumerate(signature.get("fields") or []):
        if not isinstance(item, dict) or set(item) - {"prefix", "description"}:
            raise ProgramFileError(f"{where}.signature.fields[{i}] must hold prefix, description")
        for key, value in item.items():
            _text(f"{where}.signature.fields[{i}].{key}", value)
    demos = state.get("demos") or []
    if not isinstance(demos, list) or len(demos) > MAX_DEMOS:
        raise ProgramFileError(f"{where}.demos must be a list of at most {MAX_DEMOS} demos")
    for i, demo in enumerate(demos):
        if not isinstance(demo, dict):
            raise ProgramFileError(f"{where}.demos[{i}] must be an object")
        for key, value in demo.items():
            if isinstance(value, list):
                for item in value:
                    _text(f"{where}.demos[{i}].{key}[]", str(item))
            elif not isinstance(value, (str, int, float, bool)) and value is not None:
                raise ProgramFileError(f"{where}.demos[{i}].{key} must be plain data")
            else:
                _text(f"{where}.demos[{i}].{key}", str(value))
    for key in ("traces", "train"):
        if state.get(key) not in (None, []):
            raise ProgramFileError(f"{where}.{key} must be empty")
    sent = len(str(signature.get("instructions") or "")) + sum(
        len(str(v)) for demo in demos for v in demo.values()
    )
    if sent > MAX_PROMPT_TEXT:
        raise ProgramFileError(
            f"{where}: its instructions and demos hold {sent} characters, over the "
            f"{MAX_PROMPT_TEXT} one request may carry"
        )


MLFLOW_SCHEMES = ("models:/", "runs:/")


@contextlib.contextmanager
def _store(mlflow: Any, uri: str | None) -> Iterator[None]:
    """MLflow's tracking and registry stores set to ``uri`` inside the block (``models:/``
    resolves in the registry), as they were after it."""
    if uri is None:
        yield
        return
    with _STORE_LOCK:
        tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(tracking)
            mlflow.set_registry_uri(registry)


_STORE_LOCK = threading.Lock()


def local_program(ref: str | Path, tracking_uri: str | None = None) -> Path:
    """A program file on disk: ``ref`` itself, or, for an MLflow model URI (``models:/NAME/
    VERSION``, ``runs:/RUN_ID/model``) logged by ``scale compile``, its program artifact
    downloaded from the tracking store (``tracking_uri``, else MLflow's current one)."""
    text = str(ref)
    if not text.startswith(MLFLOW_SCHEMES):
        return Path(ref)
    try:
        import mlflow

        with _store(mlflow, tracking_uri):
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise ProgramFileError(f"{text}: cannot fetch it from MLflow ({problem})") from None
    found = sorted((folder / "data").glob("*.json"))
    if not found:  # logged before the loader module: the program JSON among code
        found = sorted((folder / "artifacts").glob("*.json"))
        if len(found) == 1:
            warnings.warn(
                f"{text} was logged as code (models-from-code): scale reads only its program "
                "JSON, but mlflow.pyfunc.load_model would run the code it carries; log it "
                "again with this version",
                stacklevel=2,
            )
    if len(found) != 1:
        raise ProgramFileError(
            f"{text}: not a program logged by scale compile (no program artifact)"
        )
    return found[0]


def read_program(path: str | Path, tracking_uri: str | None = None) -> dict[str, Any]:
    """The saved state at ``path`` (a file, or an MLflow model URI, see ``local_program``),
    validated as a program file of this format (see the module docstring for what it may
    hold)."""
    path = local_program(path, tracking_uri)
    if path.suffix != ".json":
        raise ProgramFileError(f"{path}: only .json program files are loaded (never pickle)")
    try:
        if not path.is_file():
            raise FileNotFoundError
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ProgramFileError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MB")
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProgramFileError(f"{path}: no such program file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProgramFileError(f"{path}: not a readable JSON program ({exc})") from None
    header = state.get("scale") if isinstance(state, dict) else None
    if not isinstance(header, dict):
        raise ProgramFileError(f"{path}: not a scale program file (no 'scale' header)")
    if header.get("format") != FORMAT:
        raise ProgramFileError(
            f"{path}: program format {header.get('format')!r} is not the supported {FORMAT}; "
            "compile it again with this version"
        )
    if not isinstance(header.get("method"), str):
        raise ProgramFileError(f"{path}: the header names no method")
    from scale.programs.spec import METHODS

    if header["method"] not in METHODS:
        raise ProgramFileError(
            f"{path}: unknown method {header['method'][:60]!r}: one of {', '.join(METHODS)}"
        )
    for key in ("train_ids", "val_ids"):
        ids = header.get(key)
        if ids is not None and not (
            isinstance(ids, list) and all(isinstance(i, (str, int)) for i in ids)
        ):
            raise ProgramFileError(f"{path}: {key} must be a list of example ids")
    _check_knobs(f"{path}: structure", header.get("structure") or {}, STRUCTURE)
    profiles = header.get("profiles") or {}
    if not isinstance(profiles, dict) or set(profiles) - {"system1", "system2"}:
        raise ProgramFileError(f"{path}: profiles may hold system1 and system2 only")
    for name, knobs in profiles.items():
        _check_knobs(f"{path}: profiles.{name}", knobs, PROFILE_KNOBS)
    return state


def apply_state(program: dspy.Module, state: dict[str, Any], path: str | Path) -> None:
    """Load saved prompts/demos/routing into ``program``; refuses mismatches clearly."""
    if state["scale"].get("method") != program.method:
        raise ProgramFileError(
            f"{path}: saved for method {state['scale'].get('method')!r}, not {program.method!r}"
        )
    expected = {name for name, _ in program.named_predictors()}
    if "routing" in [name for name, _ in program.named_parameters()]:
        expected.add("routing")
    found = set(state) - {"scale", "metadata"}
    if found != expected:
        extra, missing = sorted(found - expected), sorted(expected - found)
        raise ProgramFileError(
            f"{path}: does not match a {program.method} program (unexpected {extra}, "
            f"missing {missing})"
        )
    for name in expected - {"routing"}:
        _check_predictor(f"{path}: {name}", state[name])
    try:
        program.load_state({k: v for k, v in state.items() if k in expected})
    except KeyError as exc:
        raise ProgramFileError(f"{path}: missing state for {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ProgramFileError(f"{path}: invalid program state ({exc})") from None


def tuned_on(path: str | Path, tracking_uri: str | None = None) -> set[str]:
    """The example ids a saved program was compiled on (its train and validation ids)."""
    header = read_program(path, tracking_uri)["scale"]
    return {str(i) for i in (header.get("train_ids") or []) + (header.get("val_ids") or [])}


class OverlapError(ValueError):
    """A tuned program measured on examples it was compiled on."""


def refuse_overlap(path: str | Path, ids: Iterable[str], tracking_uri: str | None = None) -> None:
    """Raise ``OverlapError`` if the program at ``path`` was compiled on any of ``ids``
    (measuring it there would report leaked accuracy)."""
    shared = sorted(tuned_on(path, tracking_uri) & {str(i) for i in ids})
    if shared:
        raise OverlapError(
            f"{path} was compiled on {len(shared)} of these examples "
            f"({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''}); compile it with "
            "--exclude RESULTS.jsonl, or evaluate on other examples (--seed)"
        )


def fingerprint(program: dspy.Module) -> dict[str, Any]:
    """What makes a program's results comparable: its method, systems (models, local
    runtime, compute levels, adapters), structure, routing, and a hash of its prompts and
    demos; not where a server listens (a restarted server may move). A results file records
    it, and resuming the file with a different program is refused."""
    import hashlib

    from scale import __version__

    state = program.dump_state()
    routing = state.pop("routing", None)
    prompts = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()
    systems = {}
    for i in (1, 2):
        profile = getattr(program, f"system{i}", None)
        if profile is not None:
            described = profile.describe()
            systems[f"system{i}"] = {
                k: v for k, v in described.items() if k not in ("timeout", "retries", "api_base")
            }
            if profile.model.startswith("local/"):
                systems[f"system{i}"]["runtime"] = profile.runtime
    return {
        "method": program.method,
        "systems": systems,
        "structure": getattr(program, "structure", dict)(),
        "routing": routing,
        "prompts": prompts[:16],
        "version": __version__,
    }
