"""``scale bench``: every method on the same examples, full costs, paired comparisons."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dspy

from scale.optimizers.evaluate import Summary, bootstrap_ci, evaluate, summarize
from scale.plots import tradeoff_plot
from scale.programs.io import atomic_write_text
from scale.programs.route import ESTIMATORS
from scale.tracking import Tracker

# method name -> build_program arguments
BENCH_METHODS: dict[str, dict[str, str]] = {
    "cot": {"method": "cot"},
    "vote": {"method": "vote"},
    "scale-paper": {"method": "scale", "preset": "paper"},
    "scale": {"method": "scale", "preset": "efficient"},
    "uniform-s1": {"method": "uniform-s1"},
    "uniform-s2": {"method": "uniform-s2"},
    "tuned": {},  # the program given with --program
}


def machine() -> dict[str, Any]:
    """Where and with what a benchmark ran."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("dspy", "litellm", "llama_cpp_python", "mlflow", "math-verify", "sympy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "command": " ".join(["scale", *sys.argv[1:]]),
    }


def paired(
    base: list[dict[str, Any]], other: list[dict[str, Any]], *, resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """``other`` minus ``base`` on the ids both have: accuracy difference with a paired
    95% bootstrap interval, and the ratio of tokens per problem."""
    by_id = {r["id"]: r for r in base}
    pairs = [(by_id[r["id"]], r) for r in other if r["id"] in by_id]
    if not pairs:
        return {"n": 0}
    diffs = [float(bool(o.get("correct"))) - float(bool(b.get("correct"))) for b, o in pairs]
    n = len(diffs)
    tokens = [
        sum((r.get("usage") or {}).get("total_tokens", 0) for r in side)
        for side in zip(*pairs, strict=True)
    ]
    return {
        "n": n,
        "accuracy_diff": round(sum(diffs) / n, 4),
        "ci95": bootstrap_ci(diffs, resamples=resamples, seed=seed),
        "token_ratio": round(tokens[1] / tokens[0], 3) if tokens[0] else None,
    }


def _provenance(report: dict[str, Any]) -> list[str]:
    """Markdown lines naming the model(s), weights, date, machine, command and packages."""
    machine, packages = report["machine"], report["machine"]["packages"]
    return [
        f"Model(s): {report['models']}. Date: {machine['date']}. Machine: "
        f"{machine['cores']} cores, {machine['cpu']}.",
        "",
        f"Command: `{machine['command']}`",
        "",
        *(f"- `{m}` sha256 `{h}`" for m, h in report["model_sha256"].items() if h),
        f"- packages: {', '.join(f'{k} {v}' for k, v in packages.items())}",
    ]


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark: {report['dataset']} ({_size(report)})",
        "",
        *_provenance(report),
        "",
        "| method | accuracy | 95% CI | tokens/problem | generated tokens/problem | "
        "LM calls/problem | System 2 share | s/problem | time outside LM calls | "
        "vs cot: acc. diff (95% CI) | vs cot: token ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["methods"].items():
        s = m["summary"]
        vs = m.get("vs_cot") or {}
        share = s["lm_seconds_share"]
        outside = "-" if share is None else f"{1 - share:.3f}"
        diff = (
            f"{vs['accuracy_diff']:+.3f} ({vs['ci95'][0]:+.3f}, {vs['ci95'][1]:+.3f})"
            if vs.get("n")
            else "-"
        )
        lines.append(
            f"| {name} | {s['accuracy']:.3f} | {s['ci95'][0]:.3f}-{s['ci95'][1]:.3f} | "
            f"{s['tokens_per_problem']:.0f} | {s['generated_tokens_per_problem']:.0f} | "
            f"{s['lm_calls_per_problem']:.1f} | "
            f"{s['system2_fraction']:.2f} | {m['seconds_per_problem']:.1f} | "
            f"{outside} | {diff} | {vs.get('token_ratio') or '-'} |"
        )
    lines += ["", "Tokens per problem by stage, and by system:", ""]
    for name, m in report["methods"].items():
        stages = ", ".join(f"{k} {v:.0f}" for k, v in m["summary"]["tokens_by_stage"].items())
        systems = ", ".join(
            f"System {k} {v:.0f}" for k, v in m["summary"]["tokens_by_system"].items()
        )
        lines.append(f"- {name}: {stages}; {systems}")
    return "\n".join(lines) + "\n"


def run_bench(
    examples: list[dspy.Example],
    methods: Sequence[str],
    build: Callable[[str], dspy.Module],
    out_dir: str | Path,
    *,
    dataset: str,
    models: str,
    checksums: Mapping[str, str | None] | None = None,
    round_size: int | None = None,
    threads: int = 1,
    retry_errors: bool = False,
    tracker: Tracker | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate each method on ``examples`` in rounds of ``round_size`` problems (one round
    when None): each round runs every method on the next problems, then rewrites
    ``report.json``, ``report.md`` and ``tradeoff.png`` for all problems done so far, so a
    long run always has a paired report. Results go to ``out_dir/METHOD.jsonl`` (resumed
    if present, error rows redone when ``retry_errors``); ``checksums`` maps each model to
    the sha256 of its weights, when known. Returns the last report."""
    if not examples:
        raise ValueError("no examples to benchmark")
    out_dir = Path(out_dir)
    size = round_size or len(examples)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
    wall = dict.fromkeys(methods, 0.0)
    report: dict[str, Any] = {}
    for start in range(0, len(examples), size):
        chunk = examples[start : start + size]
        done = start + len(chunk)
        for name in methods:
            chunk_rows, summary = evaluate(
                build(name),
                chunk,
                threads=threads,
                out=out_dir / f"{name}.jsonl",
                resume=True,
                retry_errors=retry_errors,
                progress=progress,
                desc=f"{name}, problems {start + 1}-{done} of {len(examples)}",
            )
            rows[name] += chunk_rows
            wall[name] += summary.wall_s
        results = {name: (rows[name], summarize(rows[name], wall[name])) for name in methods}
        report = _write_report(
            results,
            examples,
            out_dir,
            done=done,
            dataset=dataset,
            models=models,
            checksums=checksums,
        )
        if tracker is not None:
            for name, (_, summary) in results.items():
                tracker.metrics({f"{name}.{k}": v for k, v in summary.to_dict().items()}, step=done)
            for name in [
                *(f"{m}.jsonl" for m in methods),
                "report.json",
                "report.md",
                "tradeoff.png",
            ]:
                tracker.artifact(out_dir / name)
    return report


def _write_report(
    results: dict[str, tuple[list[dict[str, Any]], Summary]],
    examples: list[dspy.Example],
    out_dir: Path,
    *,
    done: int,
    dataset: str,
    models: str,
    checksums: Mapping[str, str | None] | None,
) -> dict[str, Any]:
    """Write the report of ``results``: every method on the first ``done`` of ``examples``.
    ``ids`` lists all of them, so ``--exclude report.json`` keeps a tuning split off
    problems the benchmark has yet to run."""
    report: dict[str, Any] = {
        "dataset": dataset,
        "n": done,
        "planned": len(examples),
        "models": models,
        "model_sha256": dict(checksums or {}),
        "ids": [e.id for e in examples],
        "machine": machine(),
        "methods": {},
    }
    for name, (rows, summary) in results.items():
        report["methods"][name] = {
            "summary": summary.to_dict(),
            "seconds_per_problem": round(
                sum(r.get("seconds", 0) for r in rows) / max(len(rows), 1), 2
            ),
            "vs_cot": paired(results["cot"][0], rows) if "cot" in results else None,
        }
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out_dir / "report.md", _markdown(report))
    points = [{"label": name, **m["summary"]} for name, m in report["methods"].items()]
    tradeoff_plot(
        points,
        out_dir / "tradeoff.png",
        title=f"{dataset}, {_size(report)}: accuracy vs tokens per problem",
    )
    return report


def _size(report: dict[str, Any]) -> str:
    """``n=20``, or ``n=8 of 20 planned`` for an interim report."""
    planned = report.get("planned", report["n"])
    return f"n={report['n']}" + (f" of {planned} planned" if planned != report["n"] else "")


def estimator_report(
    program: Any,
    examples: list[dspy.Example],
    out_dir: str | Path,
    *,
    estimators: Sequence[str] = ESTIMATORS,
    thresholds: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    models: str = "",
    checksums: Mapping[str, str | None] | None = None,
    tracker: Tracker | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Compare difficulty estimators on the same steps: score distribution and AUROC for
    System 1 failure, plus the accuracy and tokens each reaches at its best threshold
    (every threshold a nested run of ``tracker``). Writes ``estimators.json``,
    ``estimators.md`` and ``outcomes.jsonl``."""
    from scale.optimizers.scorer import collect_outcomes, estimator_quality
    from scale.optimizers.search import best_trial, search_routing

    out_dir = Path(out_dir)
    outcomes, errors = collect_outcomes(program, examples, tuple(estimators), progress=progress)
    atomic_write_text(
        out_dir / "outcomes.jsonl", "".join(json.dumps(o.to_dict()) + "\n" for o in outcomes)
    )
    quality = estimator_quality(outcomes)
    for name in estimators:
        trials = search_routing(
            program,
            examples,
            estimators=(name,),
            thresholds=thresholds,
            tracker=tracker,
            progress=progress,
        )
        best = best_trial(trials)
        quality.setdefault(name, {})["best"] = best.to_dict()
        quality[name]["trials"] = [t.to_dict() for t in trials]
    report = {
        "models": models,
        "model_sha256": dict(checksums or {}),
        "ids": [e.id for e in examples],
        "n_examples": len(examples),
        "n_steps": len(outcomes),
        "errors": errors,
        "hard_share": round(sum(o.hard for o in outcomes) / len(outcomes), 3) if outcomes else None,
        "estimators": quality,
        "machine": machine(),
    }
    atomic_write_text(out_dir / "estimators.json", json.dumps(report, indent=2))
    lines = [
        f"# Difficulty estimators on {len(outcomes)} steps of {len(examples)} problems",
        "",
        *_provenance(report),
        "",
        f"A step is *hard* when System 1's answer (one greedy call) differs from System 2's; "
        f"{report['hard_share']} of the steps were hard.",
        "",
        *(
            [f"Left out after an error: {', '.join(f'{k} ({v})' for k, v in errors.items())}.", ""]
            if errors
            else []
        ),
        "| estimator | AUROC (hard vs easy) | distinct scores | quartiles | best threshold | "
        "accuracy there | tokens/problem there |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, q in quality.items():
        best = q.get("best") or {}
        lines.append(
            f"| {name} | {q.get('auroc')} | {q.get('distinct')} | {q.get('quartiles')} | "
            f"{best.get('value')} | {best.get('accuracy')} | {best.get('tokens_per_problem')} |"
        )
    atomic_write_text(out_dir / "estimators.md", "\n".join(lines) + "\n")
    if tracker is not None:
        tracker.metrics({f"{k}.auroc": q["auroc"] for k, q in quality.items() if q.get("auroc")})
        for name in ("estimators.json", "estimators.md", "outcomes.jsonl"):
            tracker.artifact(out_dir / name)
    return report


def throughput(
    thread_counts: Sequence[int] = (1, 2, 4, 8),
    *,
    n: int = 16,
    delay: float = 0.5,
    method: str = "cot",
) -> list[dict[str, Any]]:
    """Problems per second against the fixed-delay fake server at each thread count (the
    framework's concurrency, with the model's own speed taken out)."""
    import time

    from scale.datasets import load_dataset
    from scale.fakeserver import FakeServer
    from scale.programs import build_program

    examples = load_dataset("gsm8k", n=n, seed=1)
    rows = []
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
    base = rows[0]["problems_per_s"] / rows[0]["threads"]
    for row in rows:
        row["scaling"] = round(row["problems_per_s"] / (base * row["threads"]), 3)
    return rows
