"""Run a program over examples: one JSONL line per example as soon as it finishes,
resumable, errors recorded per example, and a summary with a bootstrap interval and costs."""

from __future__ import annotations

import json
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import dspy
from scale.optimizers.metrics import correctness
from tqdm import tqdm

Metric = Callable[[dspy.Example, dspy.Prediction], float]


class ResultsFileError(ValueError):
    """A results file that cannot be used as asked."""


def run_example(
    program: dspy.Module, example: dspy.Example, metric: Metric = correctness
) -> dict[str, Any]:
    """Run one example; an exception becomes a recorded error, never a crash."""
    started = time.perf_counter()
    row: dict[str, Any] = {"id": example.id, "gold": str(example.answer)}
    try:
        pred = program(problem=example.problem)
        row |= {
            "predicted": pred.answer,
            "correct": bool(metric(example, pred)),
            "error": None,
            "steps": [s.to_dict() for s in pred.steps],
            "usage": pred.usage,
            "notes": pred.notes,
        }
    except Exception as exc:  # recorded per example; the run goes on
        row |= {
            "predicted": "",
            "correct": False,
            "error": f"{type(exc).__name__}: {exc}",
            "steps": [],
            "usage": {},
            "notes": [],
        }
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results file; a torn (partially written) last line is ignored and each id
    is kept once: a later row for an id (a retried error) supersedes the earlier one."""
    path = Path(path)
    rows: dict[str, dict[str, Any]] = {}
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if raw.endswith(b"\n"):
                    warnings.warn(f"{path}:{number}: unreadable result line skipped", stacklevel=2)
                continue
            if isinstance(row, dict) and "id" in row:
                rows[str(row["id"])] = row
    return list(rows.values())


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line that a killed writer left without its newline."""
    with path.open("rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


class ResultsWriter:
    """Append-only JSONL writer, one flushed and fsynced line per example, thread-safe."""

    def __init__(self, path: str | Path, *, resume: bool):
        self.path = Path(path)
        if self.path.exists() and not resume:
            raise ResultsFileError(
                f"{self.path} exists: pass --resume to continue it, or choose another --out"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            _drop_torn_tail(self.path)
        self.done = read_results(self.path) if self.path.exists() else []
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, default=str) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def bootstrap_ci(values: list[float], *, resamples: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean."""
    if not values:
        return [0.0, 0.0]
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return [round(means[int(0.025 * resamples)], 4), round(means[int(0.975 * resamples) - 1], 4)]


@dataclass
class Summary:
    """Aggregate results of one evaluation. ``lm_seconds_share`` is the share of wall time
    spent inside model calls, over the rows that made at least one uncached call (None when
    every call came from the cache)."""

    accuracy: float
    ci95: list[float]
    n: int
    correct: int
    errors: int
    tokens_per_problem: float
    generated_tokens_per_problem: float
    tokens_by_stage: dict[str, float]
    tokens_by_system: dict[str, float]
    lm_calls_per_problem: float
    system2_fraction: float
    wall_s: float
    lm_seconds_share: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(rows: list[dict[str, Any]], wall_s: float) -> Summary:
    """Accuracy (errors count as wrong), its 95% bootstrap interval and per-problem costs."""
    n = len(rows)
    correct = [float(bool(r.get("correct"))) for r in rows]
    usages = [r.get("usage") or {} for r in rows]

    def mean(values: list[float]) -> float:
        return round(sum(values) / n, 2) if n else 0.0

    def split(key: str) -> dict[str, float]:
        names = sorted({k for u in usages for k in (u.get(key) or {})})
        return {
            k: mean([(u.get(key) or {}).get(k, {}).get("total_tokens", 0) for u in usages])
            for k in names
        }

    steps = [s for r in rows for s in r.get("steps") or []]
    # Rows answered wholly from DSPy's cache spent no model time; they would show the
    # framework's own time as most of the wall time, so they are left out of the share.
    timed = [
        (u.get("lm_seconds", 0.0), r.get("seconds", 0.0))
        for r, u in zip(rows, usages, strict=True)
        if u.get("lm_calls", 0) > u.get("cached_calls", 0)
    ]
    busy = sum(seconds for _, seconds in timed)
    return Summary(
        accuracy=round(sum(correct) / n, 4) if n else 0.0,
        ci95=bootstrap_ci(correct),
        n=n,
        correct=int(sum(correct)),
        errors=sum(1 for r in rows if r.get("error")),
        tokens_per_problem=mean([u.get("total_tokens", 0) for u in usages]),
        generated_tokens_per_problem=mean([u.get("completion_tokens", 0) for u in usages]),
        tokens_by_stage=split("by_stage"),
        tokens_by_system=split("by_system"),
        lm_calls_per_problem=mean([u.get("lm_calls", 0) for u in usages]),
        system2_fraction=round(sum(s.get("system") == 2 for s in steps) / len(steps), 4)
        if steps
        else 0.0,
        wall_s=round(wall_s, 2),
        lm_seconds_share=round(sum(lm for lm, _ in timed) / busy, 4) if busy else None,
    )


def _parallel(
    function: Callable[[dspy.Example], dict[str, Any]], examples: list[dspy.Example], threads: int
) -> Iterator[dict[str, Any]]:
    """Yield results as they finish (those finished together in example order, so a Ctrl-C
    in one never drops an earlier one's result); on Ctrl-C, pending examples are cancelled."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        index: dict[Future, int] = {}
        queue = enumerate(examples)
        pending: set[Future] = set()

        def submit(count: int) -> None:
            for i, example in islice(queue, count):
                future = pool.submit(function, example)
                index[future] = i
                pending.add(future)

        try:
            submit(threads * 2)
            while pending:
                finished = wait(pending, return_when=FIRST_COMPLETED).done
                pending -= finished
                for future in sorted(finished, key=index.pop):
                    yield future.result()
                    submit(1)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def evaluate(
    program: dspy.Module,
    examples: list[dspy.Example],
    *,
    threads: int = 1,
    out: str | Path | None = None,
    resume: bool = False,
    retry_errors: bool = False,
    metric: Metric = correctness,
    progress: bool = True,
    desc: str = "eval",
) -> tuple[list[dict[str, Any]], Summary]:
    """Evaluate ``program`` on ``examples``; with ``out``, each result is appended as it
    finishes and ``resume`` skips ids already there, except rows recorded with an error when
    ``retry_errors`` (their new row is appended and supersedes the old one). Returns all rows
    (in example order) and the summary."""
    writer = ResultsWriter(out, resume=resume) if out else None
    done = {
        str(r["id"]): r
        for r in (writer.done if writer else [])
        if not (retry_errors and r.get("error"))
    }
    todo = [e for e in examples if str(e.id) not in done]
    wanted = {str(e.id) for e in examples}
    rows = {k: v for k, v in done.items() if k in wanted}
    started = time.perf_counter()
    bar = tqdm(
        total=len(examples), initial=len(rows), desc=desc, disable=not progress, unit="problem"
    )
    try:
        for row in _parallel(lambda e: run_example(program, e, metric), todo, threads):
            if writer:
                writer.write(row)
            rows[str(row["id"])] = row
            bar.update(1)
            accuracy = sum(bool(r.get("correct")) for r in rows.values()) / len(rows)
            bar.set_postfix(
                acc=f"{accuracy:.3f}", errors=sum(1 for r in rows.values() if r.get("error"))
            )
    finally:
        bar.close()
        if writer:
            writer.close()
    ordered = [rows[str(e.id)] for e in examples if str(e.id) in rows]
    return ordered, summarize(ordered, time.perf_counter() - started)
