"""The real llama.cpp path, end to end, on the tiny packaged model (no network), with both
local runtimes: in-process and the managed llama-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import pytest

from scale.models import local
from scale.models.lm import TINY_MODEL, make_lm, track
from scale.models.patches import cancellable

pytestmark = pytest.mark.local_model


@pytest.fixture
def runtime(request, monkeypatch):
    """Select the runtime for this test (and its subprocesses)."""
    name = request.param
    monkeypatch.setenv("SCALE_LOCAL_RUNTIME", name)
    local.set_runtime(None)
    yield name
    local.set_runtime(None)


@pytest.fixture(autouse=True)
def own_caches(tmp_path, monkeypatch):
    """Subprocesses keep DSPy's disk cache and MLflow's store in the test's folder."""
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def scale_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scale.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("runtime", local.MODEL_RUNTIMES, indirect=True)
def test_cot_json_on_tiny_model(runtime):
    done = scale_cli("solve", "--model", TINY_MODEL, "--method", "cot", "What is 2+3?", "--json")
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: the tiny model gave no answer
    out = json.loads(done.stdout)
    assert out["method"] == "cot" and isinstance(out["answer"], str)
    assert out["usage"]["total_tokens"] > 0 and out["usage"]["lm_calls"] >= 1


@pytest.mark.parametrize("runtime", local.MODEL_RUNTIMES, indirect=True)
@pytest.mark.parametrize(("threshold", "expected"), [("1", {1}), ("0", {2})])
def test_scale_solve_routes_on_tiny_model(runtime, threshold, expected):
    done = scale_cli(
        *("solve", "--model", TINY_MODEL, "--preset", "stepwise", "--estimator", "self"),
        *("--threshold", threshold),
        "--json",
        "A shop sells pens at 3 dollars each. How much do 4 pens cost?",
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["steps"], out
    for step in out["steps"]:
        assert set(step) >= {"subproblem", "difficulty", "system", "answer", "samples"}
    assert {s["system"] for s in out["steps"]} <= expected
    stages = out["usage"]["by_stage"]
    assert sum(v["lm_calls"] for v in stages.values()) == out["usage"]["lm_calls"]


@pytest.mark.parametrize("runtime", local.MODEL_RUNTIMES, indirect=True)
def test_usage_and_logprobs_come_back(runtime):
    lm = make_lm(TINY_MODEL, max_tokens=4)
    with track() as ledger:
        out = lm("Write a number between 0 and 1.", logprobs=True, top_logprobs=5)
    (record,) = ledger.records
    assert record.prompt_tokens > 0 and 0 < record.completion_tokens <= 4
    logprobs = out[0]["logprobs"]
    content = (
        logprobs.model_dump()["content"] if hasattr(logprobs, "model_dump") else logprobs["content"]
    )
    assert content and len(content[0]["top_logprobs"]) >= 2
    assert lm.kwargs["api_base"] == f"local://{runtime}"  # the runtime is in the cache key


def test_in_process_logprobs_use_a_second_instance(monkeypatch):
    monkeypatch.setenv("SCALE_LOCAL_RUNTIME", "inproc")
    lm = make_lm(TINY_MODEL, max_tokens=4)
    lm("Write a number.", logprobs=True, top_logprobs=2)
    lm("Say hi")  # a plain call after a logprob call: the instance without logits_all
    path = local.resolve(TINY_MODEL.removeprefix("local/"))
    assert not local.RUNTIME._models[(path, False)]._logits_all
    assert local.RUNTIME._models[(path, True)]._logits_all


# --- the managed server's life ----------------------------------------------------------------

CHILD = textwrap.dedent(
    f"""
    import os, signal, sys, time
    # Ctrl-C as in a terminal, even when started from a shell that ignores SIGINT
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ["SCALE_LOCAL_RUNTIME"] = "server"
    from scale.models.lm import make_lm
    from scale.models.llama_server import SERVERS
    lm = make_lm({TINY_MODEL!r}, max_tokens=2, cache=False)
    lm("hi")
    server = next(iter(SERVERS._servers.values()))
    print(server.process.pid, flush=True)
    if sys.argv[1] == "wait":
        time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def _gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


def test_the_server_stops_when_the_process_exits():
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "exit"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _gone(int(done.stdout.split()[0]))


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_the_server_dies_with_its_parent(how):
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, "wait"], stdout=subprocess.PIPE, text=True
    )
    try:
        server_pid = int(parent.stdout.readline())
        assert _alive(server_pid)
        parent.send_signal(how)
        parent.wait(30)
        assert _gone(server_pid), f"llama-server outlived its parent after {how!r}"
    finally:
        parent.kill()


def test_a_crashed_server_is_restarted_once_and_the_call_in_flight_fails(monkeypatch):
    from scale.models.llama_server import SERVERS, ServerError

    monkeypatch.setenv("SCALE_LOCAL_RUNTIME", "server")
    make_lm(TINY_MODEL, max_tokens=2, cache=False)("hi")
    server = SERVERS.get(local.resolve(TINY_MODEL.removeprefix("local/")), n_ctx=0)
    first = server.process.pid
    outcome: dict = {}
    messages = [{"role": "user", "content": "Count upwards from 1."}]

    def long_call() -> None:  # thousands of tokens: still running when the server dies
        try:
            outcome["reply"] = server.complete(
                messages, {"max_tokens": 5000, "ignore_eos": True}, timeout=120
            )
        except ServerError as exc:
            outcome["error"] = str(exc)

    caller = threading.Thread(target=long_call)
    caller.start()
    time.sleep(3)
    os.kill(first, signal.SIGKILL)
    caller.join(60)
    assert not caller.is_alive() and "crashed" in outcome.get("error", ""), outcome
    reply = server.complete(messages, {"max_tokens": 2}, timeout=60)  # restarted
    assert reply["choices"] and server.restarts == 1 and server.process.pid != first
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    with pytest.raises(ServerError, match="crashed again"):
        server.complete(messages, {"max_tokens": 2}, timeout=60)  # only one restart
    server.stop()


def _long_call(lm, cancel: threading.Event, outcome: dict) -> threading.Thread:
    def run() -> None:
        with cancellable(cancel):
            try:
                outcome["reply"] = lm("Write the numbers from 1 to 1000, one per line.")
            except Exception as exc:
                outcome["error"] = exc

    caller = threading.Thread(target=run)
    caller.start()
    return caller


def test_a_cancelled_call_closes_its_request_and_the_server_stops_generating(monkeypatch):
    """Cancel reaches llama-server: the caller gets the cancellation at once, the call's
    socket is shut, and the server cancels the task instead of generating 3,000 tokens."""
    from scale.models.llama_server import SERVERS

    monkeypatch.setenv("SCALE_LOCAL_RUNTIME", "server")
    monkeypatch.setattr(local, "_PASSED", (*local._PASSED, "ignore_eos"))
    make_lm(TINY_MODEL, max_tokens=2, cache=False)("hi")
    server = SERVERS.get(local.resolve(TINY_MODEL.removeprefix("local/")), n_ctx=0)
    logged = server.log_path.read_text().count("cancel task")
    lm = make_lm(TINY_MODEL, max_tokens=3000, cache=False, timeout=300, ignore_eos=True)
    cancel, outcome = threading.Event(), {}
    caller = _long_call(lm, cancel, outcome)
    time.sleep(3)  # generating
    cancel.set()
    caller.join(10)
    assert not caller.is_alive() and "cancelled" in str(outcome.get("error")), outcome
    # llama-server looks at a closed connection after 1 s without a result
    deadline = time.monotonic() + 30
    while server.log_path.read_text().count("cancel task") == logged:
        assert time.monotonic() < deadline, "llama-server kept generating for a closed request"
        time.sleep(0.5)
    with urllib.request.urlopen(f"{server.url}/slots", timeout=10) as reply:
        assert not any(slot["is_processing"] for slot in json.load(reply))


def test_a_cancelled_in_process_call_stops_at_its_next_token(monkeypatch):
    """The in-process runtime has no socket to shut: an abandoned generation (3,000 tokens,
    over 40 s on the tiny model here) is ended at its next token."""
    monkeypatch.setenv("SCALE_LOCAL_RUNTIME", "inproc")
    generated = []
    run = local.LlamaCppProvider._in_process

    def counted(path, messages, params):
        result, seconds = run(path, messages, params)
        generated.append(result["usage"]["completion_tokens"])
        return result, seconds

    monkeypatch.setattr(local.LlamaCppProvider, "_in_process", staticmethod(counted))
    make_lm(TINY_MODEL, max_tokens=2, cache=False)("hi")
    lm = make_lm(TINY_MODEL, max_tokens=3000, cache=False, timeout=300)
    cancel, outcome = threading.Event(), {}
    caller = _long_call(lm, cancel, outcome)
    time.sleep(2)
    cancel.set()
    caller.join(10)
    assert not caller.is_alive() and "cancelled" in str(outcome.get("error")), outcome
    make_lm(TINY_MODEL, max_tokens=2, cache=False)("hi")  # after the abandoned one: the lock
    assert len(generated) == 3 and generated[1] < 1000, generated


def test_crosscheck_preset_runs_the_models_program_in_the_sandbox():
    """The real path of the program-aided preset: CoT and a program from the tiny model, the
    program run by the OS sandbox (or corrected once), every call counted."""
    done = scale_cli(
        "solve", "--model", TINY_MODEL, "--preset", "crosscheck", "What is 2+3?", "--json"
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    out = json.loads(done.stdout)
    (step,) = out["steps"]
    assert any("its program" in note for note in step["notes"])
    rating = out["usage"]["by_stage"]["gate/assess"]
    assert rating["lm_calls"] in (2, 3)  # CoT's reply, the program, maybe its correction
    assert out["usage"]["lm_calls"] >= rating["lm_calls"]


def test_a_budgeted_eval_runs_on_the_real_model_within_its_budget(tmp_path):
    data = tmp_path / "two.jsonl"
    rows = [{"id": f"p{i}", "problem": f"What is {i} + 2?", "answer": str(i + 2)} for i in (1, 2)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = scale_cli(
        *("eval", "--dataset", str(data), "--model", TINY_MODEL, "--budget-tokens", "3000"),
        *("--system2-max-tokens", "64", "--json", "--no-mlflow", "--quiet"),
        *("--out", str(tmp_path / "b.jsonl")),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["n"] == 2 and 0 < found["spent_tokens"] <= found["budget_tokens"] == 6000
