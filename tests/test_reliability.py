"""Reliability: model faults from a real HTTP server on loopback, killed and resumed runs,
and bad input through the ``scale`` command. Offline; the model is ``openai/fake`` served by
``scale.bench.fakeserver``. Numbers from these runs are in docs/reliability.md (run with ``-s`` to
see the ``stats:`` lines)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import dspy
import pytest

import scale.models.lm
import scale.models.patches
from scale.bench.fakeserver import FAULTS, FakeServer, FaultPlan
from scale.cli import main
from scale.models import local, packaged
from scale.models.lm import make_lm
from scale.optimizers import ResultsFile, evaluate, read_results
from scale.programs import build_program, read_program, save_program
from scale.programs.io import atomic_write_text

RETRIED = ("http500", "http429", "reset", "slow")  # resent by DSPy; unparseable replies are not
SLACK = 0.05  # seconds of timer jitter allowed on lower bounds


# --- helpers ---------------------------------------------------------------------------------


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a ``scale`` subprocess: every cache and store in ``tmp_path``."""
    return {
        **os.environ,
        "DSPY_CACHEDIR": str(tmp_path / "dspy-cache"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PYTHONUNBUFFERED": "1",
    }


def scale_cli(
    args: list[str], tmp_path: Path, *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m scale.cli ARGS`` in ``tmp_path``; never hangs the suite."""
    return subprocess.run(
        [sys.executable, "-m", "scale.cli", *args],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fake_model(server: FakeServer) -> list[str]:
    """The model options that point ``scale`` at ``server``."""
    return ["--model", "openai/fake", "--api-base", server.url]


def lines(path: Path) -> list[dict[str, Any]]:
    """The result rows of a JSONL file (after its header), each line of which must parse."""
    every = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert "scale_results" in every[0]
    return every[1:]


def kill_after_rows(
    args: list[str], files: list[Path], rows: int, extra: float, tmp_path: Path
) -> subprocess.Popen:
    """Start ``scale ARGS``; SIGKILL it ``extra`` seconds after ``files`` hold ``rows`` lines."""
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scale.cli", *args],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            written = sum(f.read_bytes().count(b"\n") for f in files if f.exists())
            if written >= rows:
                time.sleep(extra)
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        log.close()
    return proc


# --- model faults, one call at a time --------------------------------------------------------


def test_backoff_is_exponential_and_honours_retry_after():
    plan = FaultPlan(script=("http500", "reset", "http429"), retry_after=0.3)
    with FakeServer(faults=plan) as server:
        lm = make_lm("openai/fake", api_base=server.url, timeout=5, num_retries=3, cache=False)
        assert "42" in lm("What is 6*7?")[0]
    (f0, _, gap0), (f1, _, gap1), (f2, _, gap2) = server.retries()
    assert (f0, f1, f2) == ("http500", "reset", "http429")
    assert gap0 >= 1 - SLACK and gap1 >= 2 - SLACK  # 2**attempt seconds
    assert 0.3 - SLACK <= gap2 < 1.0  # Retry-After, not the 4 s the backoff would wait
    assert server.counts["requests"] == 4


def test_retries_are_bounded():
    with FakeServer(faults=FaultPlan({"http500": 1.0})) as server:
        lm = make_lm("openai/fake", api_base=server.url, timeout=5, num_retries=1, cache=False)
        with pytest.raises(Exception, match="injected server error"):
            lm("What is 6*7?")
    assert server.counts["requests"] == 2


def test_a_huge_retry_after_is_capped(monkeypatch):
    monkeypatch.setattr(scale.models.patches, "MAX_RETRY_WAIT", 0.5)
    plan = FaultPlan(script=("http429",), retry_after="3600")
    with FakeServer(faults=plan) as server:
        lm = make_lm("openai/fake", api_base=server.url, timeout=5, num_retries=1, cache=False)
        result: list[Any] = []
        call = threading.Thread(target=lambda: result.append(lm("What is 6*7?")), daemon=True)
        call.start()
        call.join(timeout=15)
        assert not call.is_alive(), "a Retry-After of an hour stalled the call"
    assert result and server.retries()[0][2] < 1.5


def test_a_slow_reply_times_out_and_is_retried():
    plan = FaultPlan(script=("slow",), slow_seconds=10)
    with FakeServer(faults=plan) as server:
        lm = make_lm("openai/fake", api_base=server.url, timeout=0.5, num_retries=1, cache=False)
        started = time.monotonic()
        assert "42" in lm("What is 6*7?")[0]
        assert time.monotonic() - started < 5
    assert server.retries()[0][2] < 3


def test_abandoned_requests_do_not_pile_up_at_a_backend_that_hangs(monkeypatch):
    """Every reply drips a byte every 0.3 s (no read ever times out) and each attempt is
    abandoned after 1 s: once MAX_ABANDONED requests still run at the backend, further
    attempts fail at once, unsent."""
    monkeypatch.setattr(scale.models.patches, "MAX_ABANDONED", 3)
    plan = FaultPlan({"trickle": 1.0}, trickle_seconds=0.3)
    with FakeServer(faults=plan) as server:
        lm = make_lm("openai/fake", api_base=server.url, timeout=1, num_retries=0, cache=False)
        for i in range(10):
            with pytest.raises(Exception, match=r"deadline|still running"):
                lm(f"What is {i}*7?")
        sent = server.counts["requests"]
    assert sent == 3


def cancelled_call(scripted, closable: bool) -> tuple[dict[str, Any], threading.Event]:
    """A call whose reply waits (up to 10 s) to be released, cancelled 0.3 s in; a closable
    one registers its release as its request's ``on_abandon`` hook, as the local runtimes
    do."""
    released = threading.Event()

    def reply(prompt: str, params: dict) -> str:
        hook = scale.models.patches.on_abandon(released.set) if closable else nullcontext()
        with hook:
            released.wait(10)
        return "[[ ## answer ## ]]\n42"

    scripted.rules.append((".*", reply))
    lm = make_lm("scripted/slow", timeout=30, num_retries=2, cache=False)
    cancel = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        with scale.models.patches.cancellable(cancel):
            try:
                outcome["reply"] = lm("What is 6*7?")
                outcome["next"] = lm("And 6*8?")
            except Exception as exc:
                outcome["error"] = exc
        outcome["at"] = time.monotonic()

    caller = threading.Thread(target=run)
    caller.start()
    time.sleep(0.3)
    cancel.set()
    outcome["cancelled_at"] = time.monotonic()
    if not closable:
        time.sleep(0.5)
        outcome["waiting"] = caller.is_alive()
        released.set()
    caller.join(15)
    return outcome, released


def test_a_cancel_closes_a_closable_call_in_flight_at_once(scripted):
    outcome, released = cancelled_call(scripted, closable=True)
    assert released.is_set()  # the hook ran: the request was closed
    assert "reply" not in outcome and "cancelled" in str(outcome["error"])
    assert outcome["at"] - outcome["cancelled_at"] < 5  # not the reply's 10 s
    assert len(scripted.calls) == 1  # neither retried nor followed by another call


def test_a_cancel_lets_a_call_it_cannot_close_finish_and_sends_no_other(scripted):
    """A remote request cannot be closed: its work still runs, so the caller (and a serve
    slot) waits for it; the program's next call is not sent."""
    outcome, _ = cancelled_call(scripted, closable=False)
    assert outcome["waiting"]
    assert "42" in outcome["reply"][0] and "next" not in outcome
    assert isinstance(outcome["error"], scale.models.patches.CallCancelled)
    assert len(scripted.calls) == 1


def test_an_attempt_past_its_deadline_closes_its_request(scripted):
    released = threading.Event()

    def reply(prompt: str, params: dict) -> str:
        with scale.models.patches.on_abandon(released.set):
            released.wait(10)
        return "[[ ## answer ## ]]\n42"

    scripted.rules.append((".*", reply))
    lm = make_lm("scripted/slow", timeout=0.5, num_retries=0, cache=False)
    with pytest.raises(Exception, match="deadline"):
        lm("What is 6*7?")
    assert released.is_set()


def test_unparseable_replies_fall_back_to_json_then_to_the_raw_text():
    plan = FaultPlan(script=("empty", None, "garbage", "garbage"))
    with FakeServer(faults=plan) as server:
        program = build_program("cot", model="openai/fake", api_base=server.url, retries=0)
        examples = [
            dspy.Example(id=f"q{i}", problem=f"What is {i} * 7?", answer=str(7 * i)).with_inputs(
                "problem"
            )
            for i in range(2)
        ]
        rows, summary = evaluate(program, examples, progress=False)
    assert rows[0].predicted == "42" and rows[0].error is None  # JSONAdapter's retry
    assert rows[1].error is None and summary.errors == 0  # the Solver reads the raw text
    assert "answer_from_raw" in rows[1].steps[-1]["fallbacks"]
    assert server.counts["requests"] == 4


class CrashingLlama:
    """Stands in for a loaded ``llama_cpp.Llama``: its first call fails inside llama.cpp."""

    def __init__(self) -> None:
        self.calls = 0

    def create_chat_completion(self, messages: list, **params: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("llama_decode returned -3")
        text = "6 * 7 = 42, so the answer is \\boxed{42}."
        return {
            "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }

    def close(self) -> None:
        pass


def test_an_exception_inside_llama_cpp_is_a_recorded_error(tmp_path, monkeypatch):
    path = tmp_path / "dummy.gguf"
    path.write_bytes(b"GGUF")  # never loaded: the runtime already holds a fake for it
    llama = CrashingLlama()
    monkeypatch.setitem(local.RUNTIME._models, (path, False), llama)
    program = build_program("cot", model=f"local/{path}", retries=0)
    examples = [
        dspy.Example(id=f"q{i}", problem=f"What is {i} * 7?", answer="42").with_inputs("problem")
        for i in range(3)
    ]
    rows, summary = evaluate(program, examples, threads=2, progress=False)
    assert [bool(r.error) for r in rows].count(True) == 1 and summary.errors == 1
    failed = next(r for r in rows if r.error)
    assert "llama.cpp failed: RuntimeError: llama_decode returned -3" in failed.error
    assert all(r.predicted == "42" for r in rows if not r.error)  # the lock was released
    assert llama.calls == 3


# --- model faults, whole commands ------------------------------------------------------------


def test_eval_survives_30_percent_faults(tmp_path):
    plan = FaultPlan.uniform(0.3, retry_after=0.3, slow_seconds=8, seed=1)
    out = tmp_path / "results.jsonl"
    timeout, retries = 1.0, 1  # a fault on the retry too is an error: ~4% of calls
    with FakeServer(delay=0.02, faults=plan) as server:
        started = time.monotonic()
        proc = scale_cli(
            [
                *("eval", "--dataset", "gsm8k", "--n", "50", "--method", "scale", "--threads", "4"),
                *("--timeout", str(timeout), "--retries", str(retries), *fake_model(server)),
                *("--out", str(out), "--json", "--quiet", "--no-mlflow"),
            ],
            tmp_path,
            timeout=180,
        )
        wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    summary, rows = json.loads(proc.stdout), lines(out)
    assert len(rows) == 50 and len({r["id"] for r in rows}) == 50
    for row in rows:  # a recorded error, or a prediction from a program that ran to its end
        assert row["error"] or (isinstance(row["predicted"], str) and row["steps"]), row
    errors = [r["error"].split(":")[0] for r in rows if r["error"]]
    assert summary["n"] == 50 and summary["errors"] == len(errors) > 0

    counts = server.counts
    injected = sum(counts[f] for f in FAULTS)
    assert all(counts[f] > 0 for f in FAULTS), counts
    assert 0.2 < injected / counts["requests"] < 0.4
    calls = server.calls()
    assert max(len(attempts) for attempts in calls.values()) == retries + 1
    retried = server.retries()
    assert {fault for fault, _, _ in retried} == set(RETRIED)
    for fault, attempt, gap in retried:
        if fault == "http429":
            assert plan.retry_after - SLACK <= gap < 1.0, (fault, attempt, gap)
        elif fault == "slow":  # cut off at --timeout, then the backoff
            assert timeout + 2**attempt - SLACK <= gap < plan.slow_seconds, (fault, attempt, gap)
        else:
            assert gap >= 2**attempt - SLACK, (fault, attempt, gap)
    print(
        f"\nstats: eval n=50 threads=4: {counts['requests']} requests, {injected} faults "
        f"{ {f: counts[f] for f in FAULTS} }, {len(retried)} retries "
        f"(max {max(len(a) for a in calls.values())} attempts per call), "
        f"{summary['errors']} errors recorded {dict(Counter(errors))}, "
        f"accuracy {summary['accuracy']}, "
        f"slowest example {max(r['seconds'] for r in rows):.1f}s, wall {wall:.1f}s"
    )


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_retry_errors_redoes_only_the_error_rows(tmp_path, command):
    n, out = 12, tmp_path / "out"
    args = [command, "--dataset", "gsm8k", "--n", str(n), "--retries", "0", "--quiet"]
    args += ["--no-mlflow"]
    if command == "eval":
        args += ["--method", "cot", "--out", str(out / "cot.jsonl"), "--json"]
    else:
        args += ["--methods", "cot", "--out", str(out)]
    with FakeServer(faults=FaultPlan({"http500": 0.4}, seed=3)) as server:
        assert scale_cli([*args, *fake_model(server)], tmp_path).returncode == 0
    failed = {r["id"] for r in lines(out / "cot.jsonl") if r["error"]}
    assert 0 < len(failed) < n
    resume = ["--resume"] if command == "eval" else []
    with FakeServer() as server:
        proc = scale_cli([*args, *resume, *fake_model(server)], tmp_path)
        assert proc.returncode == 0 and server.counts["requests"] == 0  # errors kept as they are
        proc = scale_cli([*args, *resume, "--retry-errors", *fake_model(server)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = lines(out / "cot.jsonl")
    assert len(rows) == n + len(failed)  # the error rows stay in the file, superseded
    assert {r["id"] for r in rows[n:]} == failed and not any(r["error"] for r in rows[n:])
    assert not any(r.error for r in read_results(out / "cot.jsonl"))
    if command == "bench":
        summary = json.loads((out / "report.json").read_text())["methods"]["cot"]["summary"]
    else:
        summary = json.loads(proc.stdout)
    assert summary["n"] == n and summary["errors"] == 0


def test_compile_records_failed_trials_and_goes_on(tmp_path):
    plan = FaultPlan.uniform(0.3, seed=2)
    out = tmp_path / "tuned.json"
    with FakeServer(delay=0.02, faults=plan) as server:
        started = time.monotonic()
        proc = scale_cli(
            [
                *("compile", "--dataset", "gsm8k", "--train", "4", "--val", "6"),
                *("--optimizer", "bootstrap", "--estimator", "self", "--route", "budget"),
                *("--estimators", "self,agreement", "--thresholds", "0.3,0.7"),
                *("--decompose-options", "true"),
                *("--system2-options", "samples=1;samples=2,confidence=0.3"),
                *("--threads", "2", "--timeout", "2", "--retries", "0", *fake_model(server)),
                *("--out", str(out), "--quiet", "--no-mlflow"),
            ],
            tmp_path,
            timeout=180,
        )
        wall = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    trials = read_program(out)["scale"]["trials"]
    failed = [t for t in trials if t["failure"]]
    assert len(trials) == 8 and len(failed) == 4  # a confidence below 0.5 is refused
    assert all(t["settings"]["system2"]["confidence"] == 0.3 for t in failed)
    assert proc.stdout.count("failed:") == 4
    errors = sum(t["errors"] for t in trials)
    assert errors > 0  # examples that hit a fault are errors of their trial, not of the search
    assert "Traceback" not in proc.stderr
    build_program(model="openai/fake", program=str(out))  # the saved program loads
    counts = server.counts
    print(
        f"\nstats: compile: {counts['requests']} requests, "
        f"{sum(counts[f] for f in FAULTS)} faults, {len(failed)} failed trials, "
        f"{errors} example errors inside trials, wall {wall:.1f}s"
    )


# --- interrupted work ------------------------------------------------------------------------


def test_results_file_drops_a_torn_last_line(tmp_path):
    from scale.optimizers import ResultRow

    path = tmp_path / "r.jsonl"
    header = json.dumps({"scale_results": 1, "identity": {"method": "m"}})
    path.write_text(f'{header}\n{{"id": "a", "gold": "1"}}\n{{"id": "b", "gold": "1", "corr')
    assert [r.id for r in read_results(path)] == ["a"]  # readable before any repair
    writer = ResultsFile(path, identity={"method": "m"}, resume=True)
    writer.write(ResultRow(id="b", gold="1"))
    writer.close()
    assert [r["id"] for r in lines(path)] == ["a", "b"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    path.write_text('{"old": true}')

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(path, '{"new": true, "long": "' + "x" * 100_000 + '"}')
    assert path.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["tuned.json"]  # no temp file left


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    (tmp_path / "plain.md").write_text("x")
    atomic_write_text(tmp_path / "report.md", "x")
    mode = (tmp_path / "plain.md").stat().st_mode
    assert (tmp_path / "report.md").stat().st_mode == mode


def test_eval_killed_at_a_random_point_resumes_each_id_once(tmp_path):
    rng = random.Random(7)
    n = 24
    out = tmp_path / "results.jsonl"
    with FakeServer(delay=0.1) as server:
        args = ["eval", "--dataset", "gsm8k", "--n", str(n), "--method", "cot"]
        args += ["--threads", "2", *fake_model(server), "--out", str(out), "--quiet"]
        args += ["--no-mlflow"]
        at_rows, extra = rng.randint(1, n // 2), rng.uniform(0, 0.2)
        killed = kill_after_rows(args, [out], at_rows, extra, tmp_path)
        assert killed.returncode == -signal.SIGKILL
        before = len(read_results(out))
        assert 0 < before < n
        with out.open("ab") as f:  # what a kill in the middle of a write leaves
            f.write(b'{"id": "gsm8k-test-1", "gold": "3", "pred')
        proc = scale_cli([*args, "--resume", "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = lines(out)  # every line parses
    assert len(rows) == n and len({r["id"] for r in rows}) == n
    assert json.loads(proc.stdout)["n"] == n
    print(f"\nstats: eval killed after {before}/{n} rows, resumed to {n} rows, each id once")


def test_bench_killed_at_a_random_point_resumes_each_id_once(tmp_path):
    rng = random.Random(11)
    n = 10
    out = tmp_path / "bench"
    files = [out / "cot.jsonl", out / "uniform-s1.jsonl"]
    with FakeServer(delay=0.05) as server:
        args = ["bench", "--dataset", "gsm8k", "--n", str(n), "--methods", "cot,uniform-s1"]
        args += ["--threads", "2", *fake_model(server), "--out", str(out), "--quiet"]
        args += ["--no-mlflow"]
        at_rows, extra = rng.randint(1, 2 * n - 3), rng.uniform(0, 0.1)
        killed = kill_after_rows(args, files, at_rows, extra, tmp_path)
        assert killed.returncode == -signal.SIGKILL
        before = sum(len(read_results(f)) for f in files if f.exists())
        partial = out / "report.json"  # written after each round of 5 problems
        assert 0 < before < 2 * n
        assert not partial.exists() or json.loads(partial.read_text())["n"] < n
        with files[1].open("ab") as f:
            f.write(b'{"id": "gsm8k-test-2", "gold')
        proc = scale_cli(args, tmp_path)  # bench always resumes what --out holds
    assert proc.returncode == 0, proc.stderr
    for path in files:
        rows = lines(path)
        assert len(rows) == n and len({r["id"] for r in rows}) == n
    report = json.loads((out / "report.json").read_text())
    assert {m: s["summary"]["n"] for m, s in report["methods"].items()} == {
        "cot": n,
        "uniform-s1": n,
    }
    print(f"\nstats: bench killed after {before}/{2 * n} rows, resumed to {2 * n}, each id once")


# --- bad input through the command line ------------------------------------------------------

# Never reached: each of these command lines must fail before any model call.
UNUSED = ["--model", "openai/fake", "--api-base", "http://127.0.0.1:9/v1", "--retries", "0"]
QUIET = ["--quiet", "--no-mlflow"]
USER_ERRORS: dict[str, tuple[list[str], str]] = {
    "negative n": (["eval", "--dataset", "gsm8k", "--n", "-3", *UNUSED], "-3 must be at least 1"),
    "zero threads": (["eval", "--dataset", "gsm8k", "--threads", "0"], "0 must be at least 1"),
    "n not a number": (["bench", "--dataset", "gsm8k", "--n", "ten", "--out", "b"], "'ten'"),
    "threshold 2": (["solve", "--threshold", "2", *UNUSED, "x"], "2 is outside [0, 1]"),
    "threshold nan": (["solve", "--threshold", "nan", *UNUSED, "x"], "nan is outside [0, 1]"),
    "retries 11": (["solve", "--retries", "11", "x"], "invalid choice: 11"),
    "unknown method": (["solve", "--method", "magic", "x"], "invalid choice: 'magic'"),
    "unknown dataset": (["eval", "--dataset", "gsm9k", *UNUSED, *QUIET], "unknown dataset"),
    "unknown model": (["solve", "--model", "nosuch/model", "x"], "Unknown model 'nosuch/model'"),
    "model without provider": (["solve", "--model", "gpt4", "x"], "needs a provider prefix"),
    "unknown model in eval": (
        ["eval", "--dataset", "gsm8k", "--n", "2", "--model", "nosuch/model", *QUIET],
        "Unknown model",
    ),
    "unknown local model": (["solve", "--model", "local/nope", "x"], "Unknown local model"),
    "missing gguf": (["solve", "--model", "local/gone.gguf", "x"], "No GGUF file at gone.gguf"),
    "missing file": (["eval", "--dataset", "gone.jsonl", *UNUSED, *QUIET], "gone.jsonl: no such"),
    "binary file": (["eval", "--dataset", "binary.jsonl", *UNUSED, *QUIET], "binary file"),
    "corrupt program": (["solve", "--program", "corrupt.json", *UNUSED, "x"], "not a readable"),
    "pickled program": (["solve", "--program", "tuned.pkl", *UNUSED, "x"], "never pickle"),
    "program threshold": (["solve", "--program", "tau.json", *UNUSED, "x"], "threshold"),
    "program version": (["solve", "--program", "v99.json", *UNUSED, "x"], "format 99"),
    "results exist": (
        ["eval", "--dataset", "gsm8k", "--out", "old.jsonl", *UNUSED, *QUIET],
        "pass --resume",
    ),
    "empty problem": (["solve", *UNUSED, ""], "the problem is empty"),
    "control characters only": (["solve", *UNUSED, " \t\x01\x1b\x7f\n "], "problem is empty"),
}


@pytest.fixture
def bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder holding the bad files the cases above name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "binary.jsonl").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "corrupt.json").write_text('{"scale": {"format": 1, "method": "sca')
    (tmp_path / "tuned.pkl").write_bytes(b"\x80\x04K*.")
    (tmp_path / "old.jsonl").write_text('{"id": "x"}\n')
    state = json.loads(
        save_program(build_program("scale", model="openai/fake"), tmp_path / "p.json").read_text()
    )
    (tmp_path / "tau.json").write_text(
        json.dumps({**state, "routing": {**state["routing"], "threshold": 1.5}})
    )
    (tmp_path / "v99.json").write_text(
        json.dumps({**state, "scale": {**state["scale"], "format": 99}})
    )
    return tmp_path


def run_main(argv: list[str]) -> int:
    """``scale.cli.main`` in this process; argparse's exit becomes the returned code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_bad_input_is_one_line_and_exit_2(case, bad_files, capsys):
    argv, expected = USER_ERRORS[case]
    code = run_main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and not out, (code, out, err)
    assert err.count("\n") == 1 and ": error: " in err and expected in err, err
    assert "Traceback" not in err


def test_a_packaged_model_not_installed_is_refused_up_front(tmp_path, monkeypatch, capsys):
    missing = packaged.PackagedModel(
        "missing-1b", "a model whose package is absent", "m.gguf", "0" * 64, 1,
        (("no_such_package_for_scale_tests", "m.gguf"),), "missing",
    )  # fmt: skip
    monkeypatch.setitem(packaged.PACKAGED_MODELS, missing.name, missing)
    monkeypatch.chdir(tmp_path)
    code = run_main(
        ["eval", "--dataset", "gsm8k", "--n", "2", "--model", "local/missing-1b", *QUIET]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "local/missing-1b is not installed" in err and "scale-dspy[missing]" in err


def test_bad_input_in_a_real_process_is_one_line_and_exit_2(bad_files):
    """The same through ``python -m scale.cli``: only the error line reaches stderr."""
    cases = ("negative n", "unknown model in eval")
    with ThreadPoolExecutor(len(cases)) as pool:
        runs = {c: pool.submit(scale_cli, USER_ERRORS[c][0], bad_files) for c in cases}
        results = {c: run.result() for c, run in runs.items()}
    for case, proc in results.items():
        assert proc.returncode == 2 and not proc.stdout, (case, proc)
        assert proc.stderr.count("\n") == 1 and USER_ERRORS[case][1] in proc.stderr, proc.stderr


def test_problem_with_invalid_bytes_is_cleaned_and_noted(capsys):
    problem = os.fsdecode(b"What is 6\xff\xfe*7?\x07")  # how Python hands on undecodable argv
    with FakeServer() as server:
        code = run_main(["solve", "--json", "--method", "cot", *fake_model(server), problem])
    out, err = capsys.readouterr()
    assert code == 0, err
    answer = json.loads(out)
    assert answer["answer"] == "42"
    assert "3 control characters removed" in answer["notes"], answer["notes"]


def test_malformed_dataset_rows_are_reported_and_valid_ones_evaluated(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    good = [{"id": f"g{i}", "problem": f"What is {i} * 6?", "answer": 6 * i} for i in range(3)]
    rows = [
        json.dumps(good[0]),
        "{not json",
        json.dumps({"id": "m1", "answer": "1"}),
        json.dumps({"id": "m2", "problem": "What?"}),
        json.dumps({"id": "t1", "problem": ["a list"], "answer": "1"}),
        json.dumps({"id": "e1", "problem": "   ", "answer": "1"}),
        json.dumps({"id": "e2", "problem": "What is 1+1?", "answer": ""}),
        json.dumps(good[1]),
        json.dumps({"id": "g0", "problem": "Duplicate id?", "answer": "1"}),
        json.dumps({"id": "big", "problem": "What is 6*7? " + "x" * 1_000_000, "answer": "42"}),
        json.dumps({"id": "ctl", "problem": "What is \x00\x1b[31m6*7\u200b?\x07", "answer": "42"}),
    ]
    data = ("\n".join(rows) + "\n").encode() + b'{"id": "u1", "problem": "\xff\xfe", "answer": 1}\n'
    data += json.dumps(good[2]).encode() + b"\n"
    (tmp_path / "bad.jsonl").write_bytes(data)
    with FakeServer() as server:
        code = run_main(
            [
                *("eval", "--dataset", "bad.jsonl", "--method", "cot", *fake_model(server)),
                *("--out", "results.jsonl", "--json", *QUIET),
            ]
        )
    out, err = capsys.readouterr()
    assert code == 0, err
    skipped = [line.removeprefix("skipped ").split(": ")[0] for line in err.splitlines()]
    assert skipped == [f"bad.jsonl:{n}" for n in (2, 3, 4, 5, 6, 7, 9, 12)], err
    results = {r["id"]: r for r in lines(tmp_path / "results.jsonl")}
    assert set(results) == {"g0", "g1", "g2", "big", "ctl"}
    assert all(r["error"] is None for r in results.values())
    assert json.loads(out)["n"] == 5
    assert "problem truncated from 1000013 to 20000 characters" in results["big"]["notes"]
    assert "4 control characters removed" in results["ctl"]["notes"]  # \x00 \x1b \u200b \x07
    print(f"\nstats: dataset of {len(rows) + 2} lines: {len(skipped)} reported, 5 evaluated")


# --- deadlines, caches and interruptions -----------------------------------------------------


def test_timeout_is_a_wall_clock_deadline_per_call():
    """A server dripping one byte every 0.3 s never trips a per-read timeout of 2 s."""
    plan = FaultPlan(script=("trickle",), trickle_seconds=0.3)
    with FakeServer(faults=plan) as server:
        lm = make_lm("openai/fake", api_base=server.url, timeout=2, num_retries=0, cache=False)
        started = time.monotonic()
        with pytest.raises(Exception, match="deadline"):
            lm("What is 6*7?")
        elapsed = time.monotonic() - started
    assert elapsed < 4, elapsed
    print(f"\nstats: trickling server, --timeout 2 --retries 0: failed after {elapsed:.1f} s")


def test_the_cache_knows_which_server_answered():
    with FakeServer() as a, FakeServer() as b:
        for server in (a, b, a):
            make_lm("openai/fake", api_base=server.url, max_tokens=8)("What is 6*7?")
        assert (a.counts["requests"], b.counts["requests"]) == (1, 1)  # a again: cached


def test_first_ctrl_c_saves_and_exits_130_without_waiting_for_calls_in_flight(tmp_path):
    out = tmp_path / "r.jsonl"
    with FakeServer(delay=60) as server:
        argv = ["eval", "--dataset", "gsm8k", "--n", "4", "--method", "cot", "--threads", "2"]
        argv += ["--timeout", "300", "--out", str(out), *fake_model(server), "--quiet"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "scale.cli", *argv, "--no-mlflow"],
            cwd=tmp_path,
            env=cli_env(tmp_path),
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while server.counts["requests"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        waited = time.monotonic() - started
    assert proc.returncode == 130 and waited < 5, (proc.returncode, waited, err)
    assert "interrupted" in err and "Traceback" not in err
    assert lines(out) == []  # the header is there; nothing half-written
    print(f"\nstats: Ctrl-C with 2 calls in flight (server delay 60 s): exit 130 in {waited:.1f} s")


# --- the in-process runtime: one model load, model-only timing; defaults that agree ----------


class SlowLlama(CrashingLlama):
    """A loaded model that takes 0.4 s per call and never fails."""

    def create_chat_completion(self, messages: list, **params: Any) -> dict[str, Any]:
        time.sleep(0.4)
        self.calls += 2  # skips CrashingLlama's first-call failure
        return super().create_chat_completion(messages, **params)


def test_local_calls_resolve_the_model_once_and_time_only_the_model(monkeypatch):
    import importlib.util

    path = local.resolve("smollm2-135m")  # a packaged model: found through find_spec
    monkeypatch.setitem(local.RUNTIME._models, (path, False), SlowLlama())
    monkeypatch.setattr(local, "_runtime", "inproc")
    program = build_program("cot", model="local/smollm2-135m", retries=0)
    assert program.system2.lm  # built (and the model found) once, before the calls
    looked_up = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda *a, **k: looked_up.append(a) or real_find_spec(*a, **k)
    )
    examples = [
        dspy.Example(id=f"q{i}", problem=f"What is {i} * 7?", answer="42").with_inputs("problem")
        for i in range(4)
    ]
    rows, _ = evaluate(program, examples, threads=4, progress=False)  # calls queue on one lock
    assert looked_up == []  # the path was resolved when the LM was built, not per call
    # the 4 calls ran one after another (one lock): the last row waited for 3 others, and
    # waiting for the lock is not model time: its model time is one call's, not its wall time
    seconds = [r.usage["lm_seconds"] for r in rows]
    assert all(s >= 0.4 for s in seconds), seconds
    last = max(rows, key=lambda r: r.seconds)
    assert last.seconds >= 4 * 0.4 and last.usage["lm_seconds"] < last.seconds / 2, last


def test_vote_uses_system2_samples_as_its_one_count():
    program = build_program("vote", model="openai/fake", system2_samples=3)
    assert program.system2.samples == 3 and program.system2.stop_rule.cap == 3
    assert build_program("vote", model="openai/fake").system2.samples == 5


def test_the_framework_throughput_measurement_restores_dspys_cache():
    from scale.bench.throughput import framework

    before = dspy.cache
    framework([1], n=2, delay=0.0)
    assert dspy.cache is before


def test_model_and_profile_defaults_agree():
    from scale.programs import SystemProfile

    lm = make_lm("openai/fake", api_base="http://127.0.0.1:9/v1")
    profile = SystemProfile(model="openai/fake")
    assert lm.kwargs["timeout"] == profile.timeout and lm.num_retries == profile.retries
