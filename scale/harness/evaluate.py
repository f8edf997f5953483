"""Run a program over examples: one results row per example as soon as it finishes,
resumable, errors recorded per example, and a summary with a bootstrap interval and costs."""

from __future__ import annotations

import contextvars
import queue
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dspy
from tqdm import tqdm

from scale.grading.metric import correctness
from scale.harness.results import ResultRow, ResultsFile
from scale.models import local
from scale.programs.base import MathProgram
from scale.programs.records import Fallback

Metric = Callable[[dspy.Example, dspy.Prediction], float]
UNUSABLE = "no usable answer: the model's reply could not be read"


def run_example(
    program: dspy.Module, example: dspy.Example, metric: Metric = correctness
) -> ResultRow:
    """Run one example; an exception, or a reply with no usable answer, becomes a recorded
    error (so ``--retry-errors`` runs it again), never a crash."""
    started = time.perf_counter()
    row = ResultRow(id=str(example.id), gold=str(example.answer))
    try:
        pred = program(problem=example.problem)
    except Exception as exc:  # recorded per example; the run goes on
        row.error = f"{type(exc).__name__}: {exc}"
    else:
        steps = list(pred.steps)
        row.predicted = pred.answer
        row.correct = bool(metric(example, pred))
        row.steps = [s.to_dict() for s in steps]
        row.usage = pred.usage.to_dict()
        row.notes = list(pred.notes)
        row.fallbacks = [f.value for f in pred.fallbacks]
        if not pred.answer and steps and Fallback.NO_ANSWER in steps[-1].fallbacks:
            row.error = UNUSABLE
    row.seconds = round(time.perf_counter() - started, 3)
    runtimes = (
        [p.runtime or "" for p in program.profiles()] if isinstance(program, MathProgram) else []
    )
    if any(r.startswith(local.RECORDED) for r in runtimes) and row.usage:
        # replayed (in part): the calls' recorded time, and the model time of any others
        row.seconds = row.usage.get("lm_seconds", 0.0)
    return row


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
    every call came from the cache); ``fallbacks_per_call`` counts replies that could not
    be used as asked (parse fallbacks of any stage) per LM call."""

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
    fallbacks_per_call: float
    wall_s: float
    lm_seconds_share: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The summary for a person, a few lines."""
        lines = [
            f"accuracy {self.accuracy:.3f} (95% CI {self.ci95[0]:.3f}-{self.ci95[1]:.3f}), "
            f"n={self.n}, correct={self.correct}, errors={self.errors}",
            f"tokens/problem {self.tokens_per_problem:.0f} "
            f"({self.generated_tokens_per_problem:.0f} generated); LM calls/problem "
            f"{self.lm_calls_per_problem:.1f}; System 2 share of steps "
            f"{self.system2_fraction:.2f}; parse fallbacks per call {self.fallbacks_per_call:.3f}",
        ]
        if self.tokens_by_stage:
            lines.append(
                "tokens/problem by stage: "
                + ", ".join(f"{k} {v:.0f}" for k, v in self.tokens_by_stage.items())
            )
        if self.tokens_by_system:
            lines.append(
                "tokens/problem by system: "
                + ", ".join(f"S{k} {v:.0f}" for k, v in self.tokens_by_system.items())
            )
        share = self.lm_seconds_share
        lines.append(
            f"wall time {self.wall_s:.1f}s; share of time inside model calls "
            + ("- (every call from the cache)" if share is None else f"{share:.3f}")
        )
        return lines


def summarize(rows: list[ResultRow], wall_s: float) -> Summary:
    """Accuracy (errors count as wrong), its 95% bootstrap interval and per-problem costs."""
    n = len(rows)
    correct = [float(r.correct) for r in rows]
    usages = [r.usage or {} for r in rows]

    def mean(values: list[float]) -> float:
        return round(sum(values) / n, 2) if n else 0.0

    def split(key: str) -> dict[str, float]:
        names = sorted({k for u in usages for k in (u.get(key) or {})})
        return {
            k: mean([(u.get(key) or {}).get(k, {}).get("total_tokens", 0) for u in usages])
            for k in names
        }

    steps = [s for r in rows for s in r.steps]
    calls = sum(u.get("lm_calls", 0) for u in usages)
    fallbacks = sum(len(r.fallbacks) for r in rows) + sum(
        len(s.get("fallbacks") or []) for s in steps
    )
    # Rows answered wholly from DSPy's cache spent no model time; they would show the
    # framework's own time as most of the wall time, so they are left out of the share.
    timed = [
        (u.get("lm_seconds", 0.0), r.seconds)
        for r, u in zip(rows, usages, strict=True)
        if u.get("lm_calls", 0) > u.get("cached_calls", 0)
    ]
    busy = sum(seconds for _, seconds in timed)
    return Summary(
        accuracy=round(sum(correct) / n, 4) if n else 0.0,
        ci95=bootstrap_ci(correct),
        n=n,
        correct=int(sum(correct)),
        errors=sum(1 for r in rows if r.error),
        tokens_per_problem=mean([u.get("total_tokens", 0) for u in usages]),
        generated_tokens_per_problem=mean([u.get("completion_tokens", 0) for u in usages]),
        tokens_by_stage=split("by_stage"),
        tokens_by_system=split("by_system"),
        lm_calls_per_problem=mean([u.get("lm_calls", 0) for u in usages]),
        system2_fraction=round(sum(s.get("system") == 2 for s in steps) / len(steps), 4)
        if steps
        else 0.0,
        fallbacks_per_call=round(fallbacks / calls, 4) if calls else 0.0,
        wall_s=round(wall_s, 2),
        lm_seconds_share=round(sum(lm for lm, _ in timed) / busy, 4) if busy else None,
    )


def in_parallel(function: Callable[[Any], Any], items: list[Any], threads: int) -> Iterator[Any]:
    """Yield ``function(item)`` for each item as it finishes, ``threads`` at a time.

    Each call runs in a copy of the caller's context, so a ``dspy.context(...)`` (LM,
    adapter), a ledger or a progress callback set around the loop reaches it, as
    ``dspy.Parallel`` does. One thread runs in the caller's own thread. Workers are daemon
    threads: when the loop is abandoned (Ctrl-C, an error), no new item starts and the
    ones in flight are left to finish or die with the process, never waited for."""
    if threads <= 1:
        for item in items:
            yield function(item)
        return
    parent = contextvars.copy_context()
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    done: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((True, parent.copy().run(function, item)))
            except BaseException as exc:  # handed to the caller's thread
                done.put((False, exc))

    workers = [
        threading.Thread(target=work, daemon=True, name=f"scale-worker-{i}")
        for i in range(min(threads, len(items)))
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in items:
            while True:
                try:
                    ok, value = done.get(timeout=0.2)
                    break
                except queue.Empty:
                    continue
            if not ok:
                raise value
            yield value
    finally:
        stop.set()


def evaluate(
    program: dspy.Module,
    examples: list[dspy.Example],
    *,
    threads: int = 1,
    out: str | Path | None = None,
    identity: dict[str, Any] | None = None,
    resume: bool = False,
    retry_errors: bool = False,
    metric: Metric = correctness,
    progress: bool = True,
    desc: str = "eval",
) -> tuple[list[ResultRow], Summary]:
    """Evaluate ``program`` on ``examples``; with ``out``, each result is appended as it
    finishes (under a header holding ``identity``, by default the program's method), and
    ``resume`` skips ids already there, except rows recorded with an error when
    ``retry_errors`` (their new row is appended and supersedes the old one). Returns all rows
    (in example order) and the summary."""
    identity = identity if identity is not None else {"method": getattr(program, "method", "")}
    writer = ResultsFile(out, identity=identity, resume=resume) if out else None
    gold = {str(e.id): str(e.answer) for e in examples}
    done = {
        r.id: r
        for r in (writer.done if writer else [])
        if not (retry_errors and r.error) and gold.get(r.id, r.gold) == r.gold
    }
    stale = sum(1 for r in (writer.done if writer else []) if gold.get(r.id, r.gold) != r.gold)
    if stale:
        warnings.warn(
            f"{stale} stored rows of {out} have another gold answer than the dataset's: "
            "they are run again",
            stacklevel=2,
        )
    todo = [e for e in examples if str(e.id) not in done]
    wanted = {str(e.id) for e in examples}
    rows = {k: v for k, v in done.items() if k in wanted}
    started = time.perf_counter()
    bar = tqdm(
        total=len(examples), initial=len(rows), desc=desc, disable=not progress, unit="problem"
    )
    try:
        for row in in_parallel(lambda e: run_example(program, e, metric), todo, threads):
            if writer:
                writer.write(row)
            rows[row.id] = row
            bar.update(1)
            accuracy = sum(r.correct for r in rows.values()) / len(rows)
            bar.set_postfix(acc=f"{accuracy:.3f}", errors=sum(1 for r in rows.values() if r.error))
    finally:
        bar.close()
        if writer:
            writer.close()
    ordered = [rows[str(e.id)] for e in examples if str(e.id) in rows]
    return ordered, summarize(ordered, time.perf_counter() - started)
