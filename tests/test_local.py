"""The real llama.cpp path, end to end, on the tiny packaged model (no network)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scale.lm import TINY_MODEL, Ledger, make_lm, track

pytestmark = pytest.mark.local_model


def scale_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scale.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_cot_json_on_tiny_model():
    done = scale_cli("solve", "--model", TINY_MODEL, "--method", "cot", "What is 2+3?", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["method"] == "cot" and isinstance(out["answer"], str)
    assert out["usage"]["total_tokens"] > 0 and out["usage"]["lm_calls"] >= 1


@pytest.mark.parametrize(("threshold", "expected"), [("1", {1}), ("0", {2})])
def test_scale_solve_routes_on_tiny_model(threshold, expected):
    done = scale_cli(
        "solve",
        "--model",
        TINY_MODEL,
        "--estimator",
        "self",
        "--decompose-threshold",
        "0",
        "--threshold",
        threshold,
        "--json",
        "A shop sells pens at 3 dollars each. How much do 4 pens cost?",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["steps"], out
    for step in out["steps"]:
        assert set(step) >= {
            "subproblem",
            "difficulty",
            "system",
            "answer",
            "prompt_tokens",
            "completion_tokens",
        }
    assert {s["system"] for s in out["steps"] if s["difficulty"] != 0} <= expected
    stages = out["usage"]["by_stage"]
    assert stages["solve"]["total_tokens"] > 0
    assert sum(v["lm_calls"] for v in stages.values()) == out["usage"]["lm_calls"]


def test_usage_is_reported_through_dspy():
    import dspy

    lm = make_lm(TINY_MODEL, max_tokens=8)
    with track() as ledger:
        out = lm("Say hi")
    assert isinstance(out[0], str)
    (record,) = ledger.records
    assert record.prompt_tokens > 0 and 0 < record.completion_tokens <= 8
    assert isinstance(ledger, Ledger) and dspy is not None


def test_logprobs_come_back_from_llama_cpp():
    lm = make_lm(TINY_MODEL, max_tokens=4)
    out = lm("Write a number between 0 and 1.", logprobs=True, top_logprobs=5)
    logprobs = out[0]["logprobs"]
    content = (
        logprobs.model_dump()["content"] if hasattr(logprobs, "model_dump") else logprobs["content"]
    )
    assert content and len(content[0]["top_logprobs"]) >= 2
    from scale.local import RUNTIME, resolve

    path = resolve(TINY_MODEL.removeprefix("local/"))
    lm("Say hi")  # a plain call after a logprob call: the instance without logits_all
    assert not RUNTIME._models[(path, False)]._logits_all
    assert RUNTIME._models[(path, True)]._logits_all
