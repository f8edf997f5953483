"""A llama.cpp build that crashes on this CPU is named with the fix, not run in our process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from scale.models import buildcheck

# A stand-in llama_cpp whose model load dies of a real segmentation fault (a read of
# address 0), as a native build does on a VM that advertises an instruction it forbids.
CRASHING_BUILD = """
import ctypes

def llama_print_system_info():
    return b"AVX = 1 | AVX2 = 1 | AVX512 = 1 | (a crashing build)"

class Llama:
    def __init__(self, *args, **kwargs):
        ctypes.string_at(0)
"""


@pytest.fixture
def crashing_build(tmp_path, monkeypatch):
    package = tmp_path / "fake" / "llama_cpp"
    (package / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(CRASHING_BUILD))
    (package / "lib" / "libllama.so").write_bytes(b"")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))
    return package


def scale_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SCALE_LOCAL_RUNTIME": "inproc"}
    return subprocess.run(
        [sys.executable, "-m", "scale.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_a_build_that_segfaults_ends_in_one_line_and_exit_2(crashing_build):
    done = scale_cli("solve", "--model", "local/smollm2-135m", "--method", "cot", "What is 2+3?")
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("scale: error:")]
    assert len(errors) == 1, done.stderr
    assert "SIGSEGV" in errors[0]
    assert "CMAKE_ARGS=" in errors[0] and "--force-reinstall" in errors[0]
    assert str(crashing_build / "lib" / "libllama.so") in errors[0]
    assert "Traceback" not in done.stderr


def test_doctor_reports_the_failed_check_and_exits_1(crashing_build):
    done = scale_cli("doctor", "--check", "--json")
    assert done.returncode == 1, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["llama_cpp"]["check"].startswith("failed: llama.cpp was killed by SIGSEGV")
    assert found["llama_cpp"]["passed"] is False


def test_a_passed_check_is_remembered_per_build(monkeypatch, tmp_path):
    library = tmp_path / "libllama.so"
    library.write_bytes(b"")
    monkeypatch.setattr(buildcheck, "library_file", lambda: library)
    monkeypatch.setattr(buildcheck, "_checked", set())
    runs = []

    def probe(model, lib):
        runs.append(model)
        return {"ok": True, "returncode": 0, "system_info": "AVX2 = 1", "error": None}

    monkeypatch.setattr(buildcheck, "run_probe", probe)
    monkeypatch.setattr(buildcheck, "probe_model", lambda fallback: fallback())
    buildcheck.check_build(lambda: tmp_path / "m.gguf")
    monkeypatch.setattr(buildcheck, "_checked", set())  # a new process, same build
    buildcheck.check_build(lambda: tmp_path / "m.gguf")
    assert len(runs) == 1
    assert buildcheck.recorded_result(library)["system_info"] == "AVX2 = 1"
    os.utime(library, ns=(1, 1))  # a reinstalled build: checked again
    monkeypatch.setattr(buildcheck, "_checked", set())
    buildcheck.check_build(lambda: tmp_path / "m.gguf")
    assert len(runs) == 2


def test_signal_names_say_what_killed_the_child():
    assert buildcheck.signal_name(-11).startswith("SIGSEGV")
    assert buildcheck.signal_name(-4).startswith("SIGILL")


@pytest.mark.local_model
def test_the_installed_build_passes_its_check():
    done = scale_cli("doctor", "--check", "--json")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["llama_cpp"]["check"] == "passed"
    assert "AVX" in found["llama_cpp"]["system_info"] or found["machine"] != "x86_64"
