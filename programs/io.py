"""Saving and loading programs as JSON (never pickle), written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import dspy

FORMAT = 1


class ProgramFileError(ValueError):
    """A saved program that cannot be used; the message says why."""


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and a rename (no torn files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
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
    it (method and structure) plus any ``info`` (e.g. the optimizer's trial table)."""
    path = Path(path)
    if path.suffix != ".json":
        raise ProgramFileError(f"programs are saved as .json, got {path}")
    state = program.dump_state()
    state["scale"] = {
        "format": FORMAT,
        "method": program.method,
        "structure": getattr(program, "structure", dict)(),
        **info,
    }
    state["metadata"] = {"dependency_versions": {"dspy": dspy.__version__}}
    return atomic_write_text(path, json.dumps(state, indent=2, default=str))


def read_program(path: str | Path) -> dict[str, Any]:
    """The saved state at ``path``, validated as a program file of this format."""
    path = Path(path)
    if path.suffix != ".json":
        raise ProgramFileError(f"{path}: only .json program files are loaded (never pickle)")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProgramFileError(f"{path}: no such program file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProgramFileError(f"{path}: not a readable JSON program ({exc})") from None
    header = state.get("scale") if isinstance(state, dict) else None
    if not isinstance(header, dict):
        raise ProgramFileError(f"{path}: not a scale program file (no 'scale' header)")
    if header.get("format") != FORMAT:
        raise ProgramFileError(
            f"{path}: program format {header.get('format')!r} is not the supported {FORMAT}; "
            "compile it again with this version"
        )
    return state


def apply_state(program: dspy.Module, state: dict[str, Any], path: str | Path) -> None:
    """Load saved prompts/demos/routing into ``program``; refuses mismatches clearly."""
    if state["scale"].get("method") != program.method:
        raise ProgramFileError(
            f"{path}: saved for method {state['scale'].get('method')!r}, not {program.method!r}"
        )
    try:
        program.load_state(state)
    except KeyError as exc:
        raise ProgramFileError(f"{path}: missing state for {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ProgramFileError(f"{path}: invalid program state ({exc})") from None
