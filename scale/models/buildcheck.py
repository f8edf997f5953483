"""Check a llama.cpp build in a child process before this process loads it.

A llama-cpp-python compiled with native CPU flags can emit instructions that a virtual
machine advertises but does not allow, and then the first model call kills the process with
SIGSEGV or SIGILL and no message (a notebook kernel included). So the in-process runtime,
the first time it meets a build (its shared library's path and mtime, remembered under the
cache folder), loads a model in a child and generates one token there. A child killed by a
signal becomes a ``BuildCheckError`` that names the signal, the likely cause and the
reinstall command; any other failure of the child is left to the real load to report.

``python -m scale.models.buildcheck MODEL.gguf`` is the child: it prints llama.cpp's system info
(the CPU features the build uses), then loads the model and generates one token.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scale.models.packaged import ModelError, cache_dir

CHECK_SECONDS = 300.0  # a 1 GB model loads in seconds; a hung child is not a crash
AVX2_FLAGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
LLAMA_CPP_PYTHON = "0.3.36"


def pip_install(what: str = "'scale-dspy[local]'") -> str:
    """The pip command that builds llama.cpp for a CPU a virtual machine runs (AVX2 on
    x86_64, no native tuning elsewhere)."""
    flags = AVX2_FLAGS if platform.machine() in ("x86_64", "AMD64") else "-DGGML_NATIVE=OFF"
    return f'CMAKE_ARGS="{flags}" pip install {what}'


def reinstall_command() -> str:
    """The command that rebuilds an installed llama-cpp-python that way."""
    return pip_install(
        f"--force-reinstall --no-deps --no-cache-dir llama-cpp-python=={LLAMA_CPP_PYTHON}"
    )


class BuildCheckError(ModelError):
    """The llama.cpp build crashed in a test run; the message says how to rebuild it."""


def library_file() -> Path | None:
    """The file that identifies the installed llama.cpp build: llama-cpp-python's shared
    library (its package file when no library is found), located without importing it;
    None when llama-cpp-python is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    package = Path(spec.origin).parent
    libraries = sorted((package / "lib").glob("libllama.*"))
    return libraries[0] if libraries else Path(spec.origin)


def _results_file() -> Path:
    return cache_dir() / "build-checks.json"


def _build_key(library: Path) -> str:
    return f"{library.resolve()}@{library.stat().st_mtime_ns}"


def recorded_result(library: Path | None = None) -> dict[str, Any] | None:
    """The stored check of the installed build, or None when it has not passed here."""
    library = library or library_file()
    if library is None:
        return None
    try:
        return json.loads(_results_file().read_text()).get(_build_key(library))
    except (OSError, ValueError, AttributeError):
        return None


def _remember(library: Path, result: dict[str, Any]) -> None:
    path = _results_file()
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    known[_build_key(library)] = result
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache only means the check runs again next time


def signal_name(returncode: int) -> str:
    """``SIGSEGV (Segmentation fault)`` for a child's negative return code."""
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"signal {-returncode}"
    return f"{sig.name} ({signal.strsignal(sig) or sig.name})"


def probe_command(model: Path) -> list[str]:
    """The child that loads ``model`` with the installed build and generates one token."""
    return [sys.executable, "-m", "scale.models.buildcheck", str(model)]


def run_probe(model: Path, library: Path) -> dict[str, Any]:
    """Run the child; return what it reported (``ok``, ``system_info``, ``returncode``),
    or raise ``BuildCheckError`` when a signal killed it."""
    try:
        done = subprocess.run(
            probe_command(model),
            capture_output=True,
            text=True,
            timeout=CHECK_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "returncode": None, "system_info": None, "error": "timed out"}
    info = None
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                info = json.loads(line).get("system_info")
    if done.returncode < 0:
        raise BuildCheckError(
            f"llama.cpp was killed by {signal_name(done.returncode)} when a test run of this "
            f"build ({library}) loaded a model and generated one token: it was likely compiled "
            "for CPU instructions this machine advertises but does not allow (a native build on "
            f"a virtual machine). Rebuild it with: {reinstall_command()}"
        )
    tail = done.stderr.strip().splitlines()[-1:] if done.returncode else []
    return {
        "ok": done.returncode == 0,
        "returncode": done.returncode,
        "system_info": info,
        "error": tail[0][:300] if tail else None,
    }


_checked: set[str] = set()
_lock = threading.Lock()


def check_build(model: Callable[[], Path]) -> None:
    """Make sure the installed llama.cpp build runs here before this process loads it:
    once per build (remembered under the cache folder), in a child loading the tiny
    packaged model when it is installed (it loads fastest), else ``model()``."""
    library = library_file()
    if library is None:
        return  # nothing to check: loading will say what to install
    key = _build_key(library)
    with _lock:
        if key in _checked:
            return
        stored = recorded_result(library)
        if not (stored and stored.get("ok")):
            result = run_probe(probe_model(model), library)
            if result["ok"]:
                _remember(library, result)
        _checked.add(key)


def probe_model(fallback: Callable[[], Path]) -> Path:
    """The tiny packaged model if installed, else ``fallback()``."""
    from scale.models.packaged import PACKAGED_MODELS, packaged_status

    status = packaged_status(PACKAGED_MODELS["smollm2-135m"])
    return Path(status["path"]) if status["ready"] else fallback()


def _child(model: str) -> int:
    import llama_cpp

    print(json.dumps({"system_info": llama_cpp.llama_print_system_info().decode()}), flush=True)
    llm = llama_cpp.Llama(model_path=model, n_ctx=256, n_threads=1, verbose=False)
    llm.create_completion("1 + 1 =", max_tokens=1, temperature=0.0)
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
