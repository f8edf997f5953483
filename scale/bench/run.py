"""``scale bench``: every method on the same examples, in rounds, with full costs.

Voting is sampled once: the ``vote`` run draws ``k`` chains per problem in order, and
vote@1..k, ``adaptive-vote`` at several confidences and ``esc`` at several windows are
replayed from those samples (``scale.harness.replay``), as the peers evaluate them.
``plain-cot`` is the reference outside DSPy: the prompt the model was trained with, sent
straight to litellm, so the cost of any prompt format stays measured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dspy
import litellm

from scale.bench.report import write_report
from scale.grading.verify import extract_answer
from scale.harness.evaluate import evaluate, summarize
from scale.harness.replay import greedy_first, replay_rows
from scale.harness.results import ResultRow, read_results
from scale.models.lm import Usage, make_lm
from scale.programs.base import clean_problem
from scale.programs.io import fingerprint
from scale.programs.records import Sample, Step
from scale.programs.stopping import StopRule
from scale.signatures.solve import SolveProblem
from scale.tracking import Tracker

# method name -> ProgramSpec fields (plain-cot is built apart, tuned from --program)
BENCH_METHODS: dict[str, dict[str, Any]] = {
    "plain-cot": {},
    "cot": {"method": "cot"},
    "vote": {"method": "vote"},
    "pot": {"method": "pot"},
    "pot-vote": {"method": "pot-vote"},
    "scale-paper": {"method": "scale", "preset": "paper"},
    "scale": {"method": "scale"},  # the preset and routing options given, else the default
    "uniform-s1": {"method": "uniform-s1"},
    "uniform-s2": {"method": "uniform-s2"},
    "tuned": {},
}
REPLAYED = ("adaptive-vote", "esc")  # derived from vote's samples, never sampled again
CONFIDENCES = (0.8, 0.9, 0.95)
WINDOWS = (2, 3, 4)
PLAIN_SYSTEM = SolveProblem.__doc__.strip()


class PlainCoT(dspy.Module):
    """The plain prompt (system: "Please reason step by step, ...", user: the problem),
    sent through litellm without DSPy: no adapter, no cache. Same output shape as the
    programs."""

    method = "plain-cot"

    def __init__(self, model: str, *, max_tokens: int = 1024, **client: Any):
        super().__init__()
        self.lm = make_lm(model, max_tokens=max_tokens, cache=False, **client)

    def forward(self, problem: str) -> dspy.Prediction:
        problem, notes = clean_problem(problem)
        started = time.perf_counter()
        messages = [
            {"role": "system", "content": PLAIN_SYSTEM},
            {"role": "user", "content": problem},
        ]
        kwargs = {k: v for k, v in self.lm.kwargs.items() if k not in ("rollout_id",)}
        response = litellm.completion(model=self.lm.model, messages=messages, **kwargs)
        seconds = time.perf_counter() - started
        text = response.choices[0].message.content or ""
        prompt = int(response.usage.prompt_tokens or 0)
        completion = int(response.usage.completion_tokens or 0)
        answer = extract_answer(text, marked_only=True)
        bucket = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "lm_calls": 1,
        }
        usage = Usage(
            **bucket,
            spent_tokens=prompt + completion,
            lm_seconds=round(seconds, 3),
            seconds=round(seconds, 3),
            by_stage={"solve": bucket},
            by_system={"2": bucket},
        )
        sample = Sample(answer, prompt, completion, round(seconds, 3))
        step = Step(problem, None, 2, answer, prompt, completion, 1, round(seconds, 3), [sample])
        return dspy.Prediction(
            answer=answer, steps=[step], usage=usage, notes=notes, fallbacks=[], method=self.method
        )


def replayed_methods(
    vote_rows: list[ResultRow],
    k: int,
    cot_rows: list[ResultRow] | None = None,
    *,
    prefix: str = "",
) -> dict[str, list[ResultRow]]:
    """Every voting method replayed from ``vote_rows`` (k samples each): vote@1..k,
    adaptive-vote at ``CONFIDENCES`` and esc at ``WINDOWS`` (cap k); with ``cot_rows``,
    also greedy-first adaptive-vote (``adaptive-vote-gf``: CoT's greedy chain, then vote's
    chains 1..k-1). Names start with ``prefix`` (``pot-`` for the program-aided ones)."""
    out = {
        f"{prefix}vote@{j}": replay_rows(vote_rows, StopRule("fixed", j)) for j in range(1, k + 1)
    }
    for c in CONFIDENCES:
        rule = StopRule("adaptive", k, confidence=c)
        out[f"{prefix}adaptive-vote@{c:g}"] = replay_rows(vote_rows, rule)
    if cot_rows is not None:
        greedy = greedy_first(cot_rows, vote_rows)
        for c in CONFIDENCES:
            rule = StopRule("adaptive", k, confidence=c)
            out[f"{prefix}adaptive-vote-gf@{c:g}"] = replay_rows(greedy, rule)
    for w in WINDOWS:
        if w <= k:
            out[f"{prefix}esc@w{w}"] = replay_rows(vote_rows, StopRule("window", k, window=w))
    return out


def run_bench(
    examples: list[dspy.Example],
    methods: Sequence[str],
    build: Callable[[str], dspy.Module],
    out_dir: str | Path,
    *,
    dataset: str,
    models: str,
    vote_samples: int,
    checksums: Mapping[str, str | None] | None = None,
    round_size: int | None = None,
    rounds: int | None = None,
    threads: int = 1,
    retry_errors: bool = False,
    tracker: Tracker | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate each method on ``examples`` in rounds of ``round_size`` problems (one round
    when None): each round runs every method on the next problems, then rewrites the
    report (``report.json``, ``report.md``, the two trade-off plots) for all problems done
    so far, so a long run always has a paired report; ``rounds`` stops after that many
    (the rest stays planned). Results go to ``out_dir/METHOD.jsonl``
    (resumed if present, error rows redone when ``retry_errors``); the voting methods of
    ``REPLAYED`` come from vote's samples. A resumed run that runs nothing new leaves the
    report as it was (its machine and times are those of the runs that made the rows), or
    writes a missing one once, for all the rounds.
    Returns the last report."""
    if not examples:
        raise ValueError("no examples to benchmark")
    out_dir = Path(out_dir)
    sampled = [m for m in methods if m not in REPLAYED]
    size = round_size or len(examples)
    rows: dict[str, list[ResultRow]] = {name: [] for name in sampled}
    wall = dict.fromkeys(sampled, 0.0)
    programs = {name: build(name) for name in sampled}
    report_file = out_dir / "report.json"
    report: dict[str, Any] = json.loads(report_file.read_text()) if report_file.exists() else {}
    ran = False  # whether this run has made any row yet
    starts = range(0, len(examples), size)[:rounds]
    for start in starts:
        chunk = examples[start : start + size]
        done = start + len(chunk)
        for name, program in programs.items():
            desc = f"{name}, problems {start + 1}-{done} of {len(examples)}"
            chunk_rows, seconds, new = _run_method(
                program,
                chunk,
                out_dir / f"{name}.jsonl",
                dataset=dataset,
                threads=threads,
                retry_errors=retry_errors,
                progress=progress,
                desc=desc,
            )
            rows[name] += chunk_rows
            wall[name] += seconds
            ran |= new
        if not ran and (report or start != starts[-1]):
            continue
        report = _report(
            rows,
            wall,
            examples,
            out_dir,
            done=done,
            vote_samples=vote_samples,
            tracker=tracker,
            dataset=dataset,
            models=models,
            checksums=checksums,
        )
    return report


def _run_method(
    program: dspy.Module,
    chunk: list[dspy.Example],
    path: Path,
    *,
    dataset: str,
    threads: int,
    retry_errors: bool,
    progress: bool,
    desc: str,
) -> tuple[list[ResultRow], float, bool]:
    """One method on one round's problems, resumed from ``path``: its rows, wall seconds,
    and whether it made a row (or redid an error row)."""
    identity = (
        {"method": "plain-cot", "model": program.lm.model}
        if isinstance(program, PlainCoT)
        else fingerprint(program)
    )
    stored = {r.id: r.error for r in read_results(path)} if path.exists() else {}
    rows, summary = evaluate(
        program,
        chunk,
        threads=threads,
        out=path,
        identity=identity | {"dataset": dataset},
        resume=True,
        retry_errors=retry_errors,
        progress=progress,
        desc=desc,
    )
    new = any(r.id not in stored or (retry_errors and stored[r.id]) for r in rows)
    return rows, summary.wall_s, new


def _report(
    rows: dict[str, list[ResultRow]],
    wall: dict[str, float],
    examples: list[dspy.Example],
    out_dir: Path,
    *,
    done: int,
    vote_samples: int,
    tracker: Tracker | None,
    **provenance: Any,
) -> dict[str, Any]:
    """The report of the sampled methods and those replayed from their samples, on the
    first ``done`` problems; logged to ``tracker`` with the files."""
    results = dict(rows)
    if "vote" in results:
        results |= replayed_methods(results["vote"], vote_samples, results.get("cot"))
    if "pot-vote" in results:
        pot = results.get("pot")
        results |= replayed_methods(results["pot-vote"], vote_samples, pot, prefix="pot-")
    summaries = {name: summarize(r, wall.get(name, 0.0)) for name, r in results.items()}
    report = write_report(results, summaries, examples, out_dir, done=done, **provenance)
    if tracker is not None:
        for name, summary in summaries.items():
            tracker.metrics({f"{name}.{k}": v for k, v in summary.to_dict().items()}, step=done)
        for path in sorted(out_dir.glob("*.jsonl")) + sorted(out_dir.glob("report*")):
            tracker.artifact(path)
        for path in sorted(out_dir.glob("*.png")):
            tracker.artifact(path)
    return report
