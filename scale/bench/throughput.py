"""Throughput measurements: the framework's own concurrency (against a fixed-delay fake
server) and a local runtime's generation speed at several concurrent requests."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dspy

from scale.bench.report import markdown_table
from scale.harness.evaluate import evaluate, in_parallel

PROMPT = (
    "Natalia sold clips to {n} of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?"
)


def framework(
    thread_counts: Sequence[int] = (1, 2, 4, 8),
    *,
    n: int = 16,
    delay: float = 0.5,
    method: str = "cot",
) -> list[dict[str, Any]]:
    """Problems per second against the fixed-delay fake server at each thread count (the
    framework's concurrency, with the model's own speed taken out). DSPy's cache is off
    for the measurement and restored afterwards."""
    from scale.bench.fakeserver import FakeServer
    from scale.harness.datasets import load_dataset
    from scale.programs import build_program

    examples = load_dataset("gsm8k", n=n, seed=1)
    rows = []
    saved = dspy.cache
    try:
        with FakeServer(delay=delay) as server:
            for threads in thread_counts:
                dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
                program = build_program(method, model="openai/fake", api_base=server.url)
                started = time.perf_counter()
                _, summary = evaluate(program, examples, threads=threads, progress=False)
                wall = time.perf_counter() - started
                rows.append(
                    {
                        "threads": threads,
                        "problems": n,
                        "wall_s": round(wall, 3),
                        "problems_per_s": round(n / wall, 3),
                        "errors": summary.errors,
                        "lm_calls_per_problem": summary.lm_calls_per_problem,
                    }
                )
    finally:
        dspy.cache = saved
    base = rows[0]["problems_per_s"] / rows[0]["threads"]
    for row in rows:
        row["scaling"] = round(row["problems_per_s"] / (base * row["threads"]), 3)
    return rows


def generation(
    model: str,
    concurrency: Sequence[int] = (1, 2, 4, 8),
    *,
    max_tokens: int = 200,
    rounds: int = 2,
) -> list[dict[str, Any]]:
    """Aggregate generated tokens per second of ``model`` at each number of concurrent
    requests (``rounds`` requests per concurrent slot, sampled at temperature 0.7, distinct
    prompts and seeds, no cache) on the current local runtime."""
    from scale.models.lm import make_lm, track

    lm = make_lm(model, temperature=0.7, max_tokens=max_tokens, cache=False)
    rows = []
    offset = 0
    for concurrent in concurrency:
        jobs = list(range(offset, offset + concurrent * rounds))
        offset += len(jobs)

        def one(i: int) -> int:
            with track() as ledger:
                lm(messages=[{"role": "user", "content": PROMPT.format(n=40 + i)}], seed=i)
            return sum(r.completion_tokens for r in ledger.records)

        started = time.perf_counter()
        tokens = sum(in_parallel(one, jobs, concurrent))
        wall = time.perf_counter() - started
        rows.append(
            {
                "concurrent": concurrent,
                "requests": len(jobs),
                "generated_tokens": tokens,
                "wall_s": round(wall, 2),
                "tokens_per_s": round(tokens / wall, 2),
            }
        )
    return rows


def router_file(
    urls: Sequence[str], path: str | Path, *, pool: str = "pool", **settings: Any
) -> Path:
    """A litellm Router file with one deployment of ``openai/fake`` per server URL."""
    import json

    model_list = [
        {
            "model_name": pool,
            "litellm_params": {"model": "openai/fake", "api_base": url, "api_key": "none"},
        }
        for url in urls
    ]
    config = {
        "model_list": model_list,
        "router_settings": {"routing_strategy": "least-busy", **settings},
    }
    path = Path(path)
    path.write_text(json.dumps(config, indent=2))
    return path


def pools(
    server_counts: Sequence[int] = (1, 2, 3),
    *,
    n: int = 24,
    delay: float = 0.2,
    threads_per_server: int = 2,
    folder: str | Path,
) -> list[dict[str, Any]]:
    """Problems per second of ``cot`` through a ``router/pool`` of 1, 2, 3 ... fake servers,
    each working on one request at a time after ``delay`` seconds (a model server with one
    slot), with ``threads_per_server`` examples in flight per server."""
    import contextlib

    from scale.bench.fakeserver import FakeServer
    from scale.harness.datasets import load_dataset
    from scale.models.pools import load_router
    from scale.programs import build_program

    examples = load_dataset("gsm8k", n=n, seed=2)
    rows = []
    saved = dspy.cache
    try:
        for count in server_counts:
            with contextlib.ExitStack() as stack:
                servers = [
                    stack.enter_context(FakeServer(delay=delay, slots=1)) for _ in range(count)
                ]
                load_router(
                    router_file([s.url for s in servers], Path(folder) / f"router-{count}.json")
                )
                dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
                program = build_program("cot", model="router/pool")
                started = time.perf_counter()
                _, summary = evaluate(
                    program, examples, threads=threads_per_server * count, progress=False
                )
                wall = time.perf_counter() - started
                rows.append(
                    {
                        "servers": count,
                        "problems": n,
                        "wall_s": round(wall, 3),
                        "problems_per_s": round(n / wall, 3),
                        "errors": summary.errors,
                        "requests_per_server": [s.counts["requests"] for s in servers],
                    }
                )
    finally:
        dspy.cache = saved
    base = rows[0]["problems_per_s"] / rows[0]["servers"]
    for row in rows:
        row["scaling"] = round(row["problems_per_s"] / (base * row["servers"]), 3)
    return rows


COLUMNS = {  # the row kind (its first key) -> (column heading, key, format)
    "threads": [("threads", "threads", "{}"), ("problems/s", "problems_per_s", "{:.2f}"),
                ("scaling vs 1 thread x threads", "scaling", "{:.2f}"), ("errors", "errors", "{}")],
    "concurrent": [("concurrent requests", "concurrent", "{}"),
                   ("generated tokens", "generated_tokens", "{}"), ("wall s", "wall_s", "{}"),
                   ("tokens/s", "tokens_per_s", "{}")],
    "servers": [("servers", "servers", "{}"), ("problems/s", "problems_per_s", "{:.2f}"),
                ("scaling vs 1 server x servers", "scaling", "{:.2f}"),
                ("requests per server", "requests_per_server", "{}")],
}  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows of ``framework``, ``generation`` or ``pools`` as a Markdown table."""
    columns = COLUMNS[next(iter(rows[0]))]
    cells = [[f.format(r[k]) for _, k, f in columns] for r in rows]
    return "\n".join(markdown_table([c[0] for c in columns], cells))
