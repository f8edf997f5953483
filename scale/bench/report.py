"""Benchmark reports: provenance, per-method tables, paired comparisons, trade-off plots."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dspy

from scale.bench.plots import tradeoff_plot
from scale.harness.evaluate import Summary, bootstrap_ci
from scale.harness.results import ResultRow
from scale.programs.io import atomic_write_text


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
    from scale import __version__
    from scale.models import local

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "scale": __version__,
        "local_runtime": local.runtime_name(),
        "packages": versions,
        "command": " ".join(["scale", *sys.argv[1:]]),
    }


def model_checksums(models: list[str]) -> dict[str, str | None]:
    """sha256 of each model's weights, when known (local models), for a report."""
    from scale.models.packaged import model_sha256

    return {m: model_sha256(m) for m in dict.fromkeys(models)}


def paired(
    base: list[ResultRow], other: list[ResultRow], *, resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """``other`` minus ``base`` on the ids both have: accuracy difference with a paired
    95% bootstrap interval, wins and losses, and the ratios of tokens and seconds."""
    by_id = {r.id: r for r in base}
    pairs = [(by_id[r.id], r) for r in other if r.id in by_id]
    if not pairs:
        return {"n": 0}
    diffs = [float(o.correct) - float(b.correct) for b, o in pairs]
    n = len(diffs)
    tokens = [
        sum(r.usage.get("total_tokens", 0) for r in side) for side in zip(*pairs, strict=True)
    ]
    seconds = [sum(r.seconds for r in side) for side in zip(*pairs, strict=True)]
    return {
        "n": n,
        "accuracy_diff": round(sum(diffs) / n, 4),
        "ci95": bootstrap_ci(diffs, resamples=resamples, seed=seed),
        "wins": sum(d > 0 for d in diffs),
        "losses": sum(d < 0 for d in diffs),
        "token_ratio": round(tokens[1] / tokens[0], 3) if tokens[0] else None,
        "time_ratio": round(seconds[1] / seconds[0], 3) if seconds[0] else None,
    }


def provenance(report: dict[str, Any]) -> list[str]:
    """Markdown lines naming the model(s), weights, date, machine, command and packages."""
    machine, packages = report["machine"], report["machine"]["packages"]
    return [
        f"Model(s): {report['models']}. Date: {machine['date']}. Machine: "
        f"{machine['cores']} cores, {machine['cpu']}; local runtime {machine['local_runtime']}.",
        "",
        f"Command: `{machine['command']}`",
        "",
        *(f"- `{m}` sha256 `{h}`" for m, h in report["model_sha256"].items() if h),
        f"- packages: scale {machine['scale']}, "
        + ", ".join(f"{k} {v}" for k, v in packages.items()),
    ]


def method_family(name: str) -> str | None:
    """The curve a replayed method belongs to (``vote@3`` -> ``vote``), else None."""
    match = re.match(r"(vote|adaptive-vote(?:-gf)?|esc)@", name)
    return match[1] if match else None


def _diff(vs: dict[str, Any] | None) -> str:
    if not vs or not vs.get("n"):
        return "-"
    return (
        f"{vs['accuracy_diff']:+.3f} ({vs['ci95'][0]:+.3f}, {vs['ci95'][1]:+.3f}), "
        f"{vs['wins']}W/{vs['losses']}L, tokens x{vs['token_ratio']}, time x{vs['time_ratio']}"
    )


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines: the header, its separator, one line per row of cells."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    return [line(header), "|" + "---|" * len(header), *map(line, rows)]


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: provenance, one row per method, paired comparisons."""
    reference = report["reference"]  # None when neither cot nor plain-cot was run
    header = ["method", "accuracy", "95% CI", "tokens/problem", "generated", "LM calls",
              "System 2 share", "s/problem", "fallbacks/call"]  # fmt: skip
    if reference:
        header.append(f"vs {reference}: diff (95% CI), W/L, ratios")
    lines = [
        f"# Benchmark: {report['dataset']} ({_size(report)})",
        "",
        *provenance(report),
        "",
    ]
    rows = []
    for name, m in report["methods"].items():
        s = m["summary"]
        cells = [
            name,
            f"{s['accuracy']:.3f}",
            f"{s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}",
            f"{s['tokens_per_problem']:.0f}",
            f"{s['generated_tokens_per_problem']:.0f}",
            f"{s['lm_calls_per_problem']:.1f}",
            f"{s['system2_fraction']:.2f}",
            f"{m['seconds_per_problem']:.1f}",
            f"{s['fallbacks_per_call']:.3f}",
        ]
        if reference:
            cells.append(_diff(m.get("vs_reference")))
        rows.append(cells)
    lines += markdown_table(header, rows)
    if "tuned" in report["methods"]:
        lines += ["", "Tuned SCALE against every other method (tuned minus other):", ""]
        lines += markdown_table(
            ["other", "tuned - other (95% CI), W/L, ratios"],
            [[n, _diff(m.get("tuned_vs"))] for n, m in report["methods"].items() if n != "tuned"],
        )
    lines += ["", "Tokens per problem by stage, and by system:", ""]
    for name, m in report["methods"].items():
        if method_family(name):
            continue
        stages = ", ".join(f"{k} {v:.0f}" for k, v in m["summary"]["tokens_by_stage"].items())
        systems = ", ".join(
            f"System {k} {v:.0f}" for k, v in m["summary"]["tokens_by_system"].items()
        )
        lines.append(f"- {name}: {stages}; {systems}")
    return "\n".join(lines) + "\n"


def write_report(
    results: dict[str, list[ResultRow]],
    summaries: dict[str, Summary],
    examples: list[dspy.Example],
    out_dir: Path,
    *,
    done: int,
    dataset: str,
    models: str,
    checksums: Mapping[str, str | None] | None,
) -> dict[str, Any]:
    """Write ``report.json``, ``report.md``, ``tradeoff.png`` (accuracy vs tokens) and
    ``tradeoff-time.png`` (vs wall seconds) for every method on the first ``done`` of
    ``examples``. ``ids`` lists all of them, so ``--exclude report.json`` keeps a tuning
    split off problems the benchmark has yet to run."""
    reference = next((m for m in ("plain-cot", "cot") if m in results), None)
    report: dict[str, Any] = {
        "dataset": dataset,
        "n": done,
        "planned": len(examples),
        "models": models,
        "model_sha256": dict(checksums or {}),
        "ids": [e.id for e in examples],
        "reference": reference,
        "machine": machine(),
        "methods": {},
    }
    for name, rows in results.items():
        report["methods"][name] = {
            "summary": summaries[name].to_dict(),
            "seconds_per_problem": round(sum(r.seconds for r in rows) / max(len(rows), 1), 2),
            "vs_reference": paired(results[reference], rows) if reference else None,
            "tuned_vs": paired(rows, results["tuned"]) if "tuned" in results else None,
        }
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out_dir / "report.md", markdown(report))
    points = [
        {
            "label": name,
            "family": method_family(name),
            "seconds_per_problem": m["seconds_per_problem"],
            **m["summary"],
        }
        for name, m in report["methods"].items()
    ]
    for x, suffix, what in (
        ("tokens_per_problem", "", "tokens"),
        ("seconds_per_problem", "-time", "wall seconds"),
    ):
        tradeoff_plot(
            points,
            out_dir / f"tradeoff{suffix}.png",
            x=x,
            title=f"{dataset}, {_size(report)}: accuracy vs {what} per problem",
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
    estimators: tuple[str, ...],
    levels: tuple[str, ...] = ("steps", "problems"),
    models: str = "",
    checksums: Mapping[str, str | None] | None = None,
    tracker: Any = None,
    threads: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Compare difficulty estimators on the same steps and problems: AUROC for System 1's
    failure, score distributions, and the best threshold of each (the one that keeps most
    of System 1's right answers while sending its failures to System 2). Writes
    ``estimators.json``, ``estimators.md`` and ``outcomes.jsonl``; ``labelled.jsonl`` keeps
    each example's outcomes as it is labelled, so an interrupted run resumes."""
    from scale.optimizers.outcomes import collect_outcomes, estimator_quality

    out_dir = Path(out_dir)
    outcomes, errors = collect_outcomes(
        program,
        examples,
        estimators,
        problems="problems" in levels,
        steps="steps" in levels,
        threads=threads,
        progress=progress,
        journal=out_dir / "labelled.jsonl",
    )
    atomic_write_text(
        out_dir / "outcomes.jsonl", "".join(json.dumps(o.to_dict()) + "\n" for o in outcomes)
    )
    quality = estimator_quality(outcomes)
    for name, by_level in quality.items():
        for level, q in by_level.items():
            chosen = [o for o in outcomes if (o.index >= 0) == (level == "steps")]
            q["best_threshold"] = _best_threshold(
                [o.scores.get(name) for o in chosen], [o.hard for o in chosen]
            )
    steps = [o for o in outcomes if o.index >= 0]
    problems = [o for o in outcomes if o.index < 0]
    report = {
        "models": models,
        "model_sha256": dict(checksums or {}),
        "ids": [e.id for e in examples],
        "n_examples": len(examples),
        "n_steps": len(steps),
        "n_problems": len(problems),
        "errors": errors,
        "hard_share": {"steps": _hard_share(steps), "problems": _hard_share(problems)},
        "estimators": quality,
        "machine": machine(),
    }
    atomic_write_text(out_dir / "estimators.json", json.dumps(report, indent=2))
    atomic_write_text(out_dir / "estimators.md", estimators_markdown(report))
    if tracker is not None:
        tracker.metrics(
            {
                f"{name}.{level}.auroc": q["auroc"]
                for name, by_level in quality.items()
                for level, q in by_level.items()
                if q.get("auroc") is not None
            }
        )
        for name in ("estimators.json", "estimators.md", "outcomes.jsonl"):
            tracker.artifact(out_dir / name)
    return report


def _hard_share(outcomes: list) -> float | None:
    return round(sum(o.hard for o in outcomes) / len(outcomes), 3) if outcomes else None


def estimators_markdown(report: dict[str, Any]) -> str:
    """``estimators.md``: provenance, what *hard* means, and one row per estimator and level."""
    errors, share = report["errors"], report["hard_share"]
    lines = [
        f"# Difficulty estimators on {report['n_steps']} steps and {report['n_problems']} problems",
        "",
        *provenance(report),
        "",
        "A step is *hard* when System 1's greedy answer differs from System 2's (in System 2's "
        "context); a problem is hard when System 1's greedy answer to it is wrong. Hard share: "
        f"steps {share['steps']}, problems {share['problems']}.",
        "",
        *(
            [f"Left out after an error: {', '.join(f'{k} ({v})' for k, v in errors.items())}.", ""]
            if errors
            else []
        ),
        "| estimator | level | AUROC | n (hard) | fires | precision when fired | distinct "
        "scores | quartiles | best threshold (S1 kept right / failures escalated) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_level in report["estimators"].items():
        for level, q in by_level.items():
            best = q["best_threshold"]
            shown = (
                f"{best['threshold']:g} ({best['kept_right']:.2f} / {best['escalated_wrong']:.2f})"
                if best
                else "-"
            )
            lines.append(
                f"| {name} | {level} | {q['auroc']} | {q['n']} ({q['hard']}) | {q['fires']} | "
                f"{q['precision_when_fired']} | {q['distinct']} | {q['quartiles']} | {shown} |"
            )
    return "\n".join(lines) + "\n"


def _best_threshold(scores: list[float | None], hard: list[bool]) -> dict[str, float] | None:
    """The threshold maximizing (share of easy items kept on System 1) + (share of hard
    ones escalated), Youden's J; None when a class is empty."""
    easy_n, hard_n = hard.count(False), hard.count(True)
    if not easy_n or not hard_n:
        return None
    values = [1.0 if s is None else s for s in scores]
    best = None
    for threshold in sorted({0.0, *values}):
        kept = sum(v <= threshold and not h for v, h in zip(values, hard, strict=True)) / easy_n
        escalated = sum(v > threshold and h for v, h in zip(values, hard, strict=True)) / hard_n
        if best is None or kept + escalated > best["kept_right"] + best["escalated_wrong"]:
            best = {"threshold": threshold, "kept_right": kept, "escalated_wrong": escalated}
    return best
