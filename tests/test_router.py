"""Model pools through litellm's Router: calls spread over the deployments, survive one
being killed, and scale with the number of servers."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest

from scale.bench.fakeserver import FakeServer
from scale.bench.throughput import pools, router_file
from scale.harness.datasets import load_dataset
from scale.models.pools import RouterError, load_router
from scale.optimizers import evaluate
from scale.programs import build_program


@pytest.fixture
def servers():
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(FakeServer(delay=0.05, slots=2)) for _ in range(3)]


def test_an_eval_spreads_its_calls_over_every_server(servers, tmp_path):
    load_router(router_file([s.url for s in servers], tmp_path / "r.json"))
    rows, summary = evaluate(
        build_program("cot", model="router/pool", retries=0),
        load_dataset("gsm8k", n=50, seed=4),
        threads=8,
        progress=False,
    )
    assert summary.n == 50 and summary.errors == 0
    counts = [s.counts["requests"] for s in servers]
    assert sum(counts) == 50 and min(counts) >= 5, counts
    assert rows[0].usage["lm_calls"] == 1 and rows[0].usage["total_tokens"] > 0


def test_a_server_killed_mid_run_loses_and_duplicates_nothing(servers, tmp_path):
    load_router(
        router_file(
            [s.url for s in servers],
            tmp_path / "r.json",
            num_retries=2,
            allowed_fails=1,
            cooldown_time=30,
        )
    )
    examples = load_dataset("gsm8k", n=50, seed=5)
    out = tmp_path / "rows.jsonl"

    def kill_when_busy() -> None:
        while sum(s.counts["requests"] for s in servers) < 15:
            time.sleep(0.01)
        servers[2].__exit__(None, None, None)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    rows, summary = evaluate(
        build_program("cot", model="router/pool", retries=1, timeout=5),
        examples,
        threads=8,
        out=out,
        progress=False,
    )
    killer.join()
    ids = [r.id for r in rows]
    assert sorted(ids) == sorted(e.id for e in examples) and len(set(ids)) == 50
    assert all(r.error or r.predicted for r in rows)
    assert out.read_text().count("\n") == 51  # the header and one row per example
    print(f"\nstats: 50 problems, 8 threads, 1 of 3 servers killed: {summary.errors} errors")


def test_a_pool_the_router_file_lacks_is_refused(servers, tmp_path):
    load_router(router_file([servers[0].url], tmp_path / "r.json"))
    with pytest.raises(RouterError, match="no pool 'other'"):
        build_program("cot", model="router/other")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: []\n")
    with pytest.raises(RouterError, match="non-empty model_list"):
        load_router(bad)


def test_a_pool_spreads_the_work_over_its_servers(tmp_path):
    """The speed-up itself is a measurement (bench/results/router), not a test: here, that
    every server of a pool takes a share of the calls and none is lost."""
    rows = pools((1, 3), n=12, delay=0.15, folder=tmp_path)
    assert [r["errors"] for r in rows] == [0, 0]
    one, three = (r["requests_per_server"] for r in rows)
    assert sum(three) == sum(one) >= 12
    assert min(three) >= sum(three) // 6, three  # least-busy routing: no server idles
    print(f"\nstats: 3 servers at {rows[1]['scaling']:.2f}x the 1-server rate per server")


def _pool_file(path, api_base: str, api_key: str) -> str:
    entry = {"model": "openai/m", "api_base": api_base, "api_key": api_key}
    path.write_text(json.dumps({"model_list": [{"model_name": "p", "litellm_params": entry}]}))
    return str(path)


def test_a_router_file_reads_only_its_own_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-yours")
    stealing = _pool_file(
        tmp_path / "r.json", "http://evil.example/v1", "os.environ/OPENAI_API_KEY"
    )
    with pytest.raises(RouterError, match="outside SCALE_ROUTER_"):
        load_router(stealing)
    with pytest.raises(RouterError, match="is not set"):
        load_router(_pool_file(tmp_path / "u.json", "http://h/v1", "os.environ/SCALE_ROUTER_K"))


def test_the_cache_key_follows_the_resolved_endpoints_not_the_files_text(tmp_path, monkeypatch):
    path = _pool_file(tmp_path / "r.json", "os.environ/SCALE_ROUTER_BASE", "none")
    monkeypatch.setenv("SCALE_ROUTER_BASE", "http://10.0.0.1:8000/v1")
    first = load_router(path)
    monkeypatch.setenv("SCALE_ROUTER_BASE", "http://10.0.0.2:8000/v1")
    assert load_router(path) != first  # same text, another endpoint: another cache key


def test_a_yaml_error_is_one_line(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("model_list:\n  - model_name: [unclosed\n")
    with pytest.raises(RouterError) as caught:
        load_router(bad)
    assert "\n" not in str(caught.value) and "not a readable router file" in str(caught.value)
