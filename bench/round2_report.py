"""Round 2's summary of one dataset folder: every method on the same problems and samples,
paired with CoT and with the default SCALE program, the allocation targets, the difficulty
estimators, and the accuracy/tokens and accuracy/time planes.

    python bench/round2_report.py bench/results/round2-gsm8k-server

Reads what ``bench/round2.sh`` wrote in the folder: ``replayed/`` (cot, vote and the default
program, replayed from the recordings; the voting peers are replayed from vote's chains
here, capped at all the chains and, named "cap 5", at the first pass's),
``plain-cot.jsonl`` (the sampling run), ``gates/ESTIMATOR/G.jsonl`` (the default program
gated at G on a one-call estimator instead), ``crossfit-a/``, ``crossfit-b/`` (tuned by
cross-fitting), ``transfer-from-*/`` (tuned on the other dataset), ``first-20/`` (methods
run on the first 20 problems only), ``estimators-problems-*/`` and ``estimators-steps*/``.
Writes ``summary.md``, ``summary.json``, ``summary.png`` (accuracy vs tokens) and
``summary-time.png`` (vs model seconds).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import compile_replay
import round3_report

from scale.bench.plots import tradeoff_plot
from scale.bench.report import machine, method_family, paired
from scale.bench.run import replayed_methods
from scale.harness.replay import stored_answers
from scale.optimizers import ResultRow, read_results, summarize

TARGET_VOTE = 5  # the allocation targets compare with vote@5
PEERS = "adaptive-vote"  # Adaptive-Consistency as its authors run it (all chains sampled)


def _rows(path: Path, ids: list[str]) -> list[ResultRow] | None:
    """The rows of ``path`` for ``ids``, in order; None unless every id has one."""
    if not path.is_file():
        return None
    found = {r.id: r for r in read_results(path)}
    return [found[i] for i in ids] if all(i in found for i in ids) else None


def collect(folder: Path) -> tuple[list[str], dict[str, list[ResultRow]], int]:
    """The problems done, every method's rows on all of them, and vote's chains a problem."""
    ids = [json.loads(line)["id"] for line in (folder / "problems.jsonl").open()]
    methods: dict[str, list[ResultRow]] = {}
    for name in ("cot", "vote", "scale"):
        rows = _rows(folder / "replayed" / f"{name}.jsonl", ids)
        if rows is not None:
            methods[name] = rows
    chains = max(len(stored_answers(r)) for r in methods["vote"])
    methods |= replayed_methods(methods["vote"], chains, methods["cot"])
    if chains > TARGET_VOTE:  # the stopping rules capped at the first pass's chains too
        capped = replayed_methods(methods["vote"], TARGET_VOTE, methods["cot"])
        methods |= {
            f"{k} cap {TARGET_VOTE}": v for k, v in capped.items() if not k.startswith("vote@")
        }
    del methods["vote"]  # = vote@{chains}
    plain = _rows(folder / "plain-cot.jsonl", ids)
    if plain is not None:
        methods["plain-cot"] = plain
    for estimator in sorted(p.name for p in (folder / "gates").glob("*")):
        for path in sorted((folder / "gates" / estimator).glob("*.jsonl"), key=_gate):
            rows = _rows(path, ids)
            if rows is not None:  # e.g. scale/confidence-mean@0.04
                methods[f"scale/{estimator}@{path.stem}"] = rows
    tuned = {r.id: r for half in "ab" for r in _all(folder / f"crossfit-{half}" / "tuned.jsonl")}
    if all(i in tuned for i in ids):
        methods["tuned"] = [tuned[i] for i in ids]
    for path in sorted(folder.glob("transfer-from-*/tuned.jsonl")):
        rows = _rows(path, ids)
        if rows is not None:
            methods[f"tuned on {path.parent.name.removeprefix('transfer-from-')}"] = rows
    methods |= round3_report.collect(folder, ids, methods)
    methods |= compile_replay.collect(folder, ids)
    return ids, methods, chains


def _gate(path: Path) -> float:
    return float(path.stem)


def _all(path: Path) -> list[ResultRow]:
    return read_results(path) if path.is_file() else []


def _point(name: str, rows: list[ResultRow]) -> dict[str, Any]:
    s = summarize(rows, 0.0)
    family = (
        method_family(name)
        or round3_report.family(name)
        or (name.split("@")[0] if name.startswith("scale/") else None)
    )
    return {
        "label": name,
        "family": family,
        "n": s.n,
        "correct": s.correct,
        "accuracy": s.accuracy,
        "ci95": s.ci95,
        "tokens_per_problem": s.tokens_per_problem,
        "generated_tokens_per_problem": s.generated_tokens_per_problem,
        "lm_calls_per_problem": s.lm_calls_per_problem,
        "system2_fraction": s.system2_fraction,
        "seconds_per_problem": round(sum(r.seconds for r in rows) / max(len(rows), 1), 1),
    }


def _vs(base: list[ResultRow] | None, rows: list[ResultRow]) -> str:
    if base is None or base is rows:
        return ""
    d = paired(base, rows)
    return (
        f"{d['accuracy_diff']:+.2f} ({d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}), "
        f"{d['wins']}W/{d['losses']}L, tokens x{d['token_ratio']}, time x{d['time_ratio']}"
    )


def targets(points: dict[str, dict[str, Any]], auroc: dict[str, float]) -> list[tuple[str, str]]:
    """The allocation issue's targets for tuned SCALE, each with the numbers."""
    tuned, cot, vote = points.get("tuned"), points["cot"], points[f"vote@{TARGET_VOTE}"]
    out = []
    if tuned is not None:
        half = vote["tokens_per_problem"] / 2
        ratio = tuned["tokens_per_problem"] / vote["tokens_per_problem"]
        met = tuned["accuracy"] >= vote["accuracy"] and tuned["tokens_per_problem"] <= half
        out.append(
            (
                f"at least vote@{TARGET_VOTE}'s accuracy at no more than half its tokens",
                f"{'met' if met else '**missed**'}: {tuned['correct']} against "
                f"{vote['correct']} correct, {tuned['tokens_per_problem']:.0f} tokens against "
                f"{half:.0f} allowed ({ratio:.2f}x)",
            )
        )
        peers = [p for p in points.values() if p["family"] == PEERS]
        beaten_by = [
            p["label"]
            for p in peers
            if p["accuracy"] > tuned["accuracy"]
            and p["tokens_per_problem"] <= tuned["tokens_per_problem"]
        ]
        out.append(
            (
                "on or above the Adaptive-Consistency curve",
                "**missed**: " + ", ".join(beaten_by) + " more accurate at fewer tokens"
                if beaten_by
                else "met: no Adaptive-Consistency point is more accurate at no more tokens",
            )
        )
        gain = tuned["accuracy"] - cot["accuracy"]
        out.append(
            (
                "cot + 10 points",
                f"{'met' if gain >= 0.1 else '**missed**'}: {gain * 100:+.0f} points",
            )
        )
    for level, best in sorted(auroc.items()):
        out.append(
            (
                f"the best estimator's AUROC for System 1's failure at least 0.75 ({level})",
                f"{'met' if best >= 0.75 else '**missed**'}: {best:.2f}",
            )
        )
    return out


def estimator_table(folder: Path) -> tuple[list[str], dict[str, float]]:
    """AUROC, score quartiles and best threshold of every estimator run on these samples
    (``estimators-problems-*/``, ``estimators-steps*/``), at each level it was run at; and
    the best AUROC at each level. A run still labelling (no ``estimators.json`` yet) is
    left out."""
    lines = [
        "| estimator | folder | level | n (hard) | AUROC for System 1's failure | "
        "distinct scores | quartiles | best threshold: S1 kept right / failures escalated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best: dict[str, float] = {}
    runs = [*folder.glob("estimators-problems-*"), *folder.glob("estimators-steps*")]
    for path in sorted(run / "estimators.json" for run in runs):
        if not path.is_file():
            continue
        found = json.loads(path.read_text())
        for name, levels in found["estimators"].items():
            for level, q in levels.items():
                if not q["n"]:
                    continue
                t = q["best_threshold"] or {}
                quartiles = " / ".join(f"{v:.3g}" for v in q["quartiles"])
                lines.append(
                    f"| {name} | {path.parent.name} | {level} | {q['n']} ({q['hard']}) | "
                    f"{q['auroc']:.2f} | {q['distinct']} | {quartiles} | "
                    f"{t.get('threshold', '-')}: {t.get('kept_right', 0):.2f} / "
                    f"{t.get('escalated_wrong', 0):.2f} |"
                )
                best[level] = max(best.get(level, 0.0), q["auroc"])
    return lines, best


def first_twenty(folder: Path, methods: dict[str, list[ResultRow]]) -> list[str]:
    """Methods run on the first problems only, paired with cot and scale on the same ones."""
    lines = []
    for path in sorted((folder / "first-20").glob("*.jsonl")):
        rows = read_results(path)
        ids = {r.id for r in rows}
        s = summarize(rows, 0.0)
        cot = [r for r in methods["cot"] if r.id in ids]
        scale = [r for r in methods["scale"] if r.id in ids]
        lines.append(
            f"| {path.stem} | {s.correct}/{s.n} | {s.tokens_per_problem:.0f} | "
            f"{s.lm_calls_per_problem:.1f} | {s.system2_fraction:.2f} | "
            f"{summarize(cot, 0.0).correct}/{len(cot)} | {_vs(cot, rows)} | {_vs(scale, rows)} |"
        )
    if not lines:
        return []
    return [
        "",
        "Methods run on the first problems only (step-level: a decomposition, context, steps):",
        "",
        "| method | correct | tokens/problem | LM calls | System 2 share | cot on them | "
        "vs cot | vs scale |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
    ]


def _more_chains(folder: Path, chains: int) -> list[str]:
    """Where vote's chains beyond the first pass's were drawn (``chains-N/``), if they were."""
    extended = folder / f"chains-{chains}" / "report.json"
    if not extended.is_file():
        return []
    run = json.loads(extended.read_text())["machine"]
    return [
        "",
        f"Vote's chains beyond the first pass's, up to {chains}, were drawn later "
        f"(`chains-{chains}/report.md`: {run['cores']} cores, {run['cpu']}, {run['date'][:10]}; "
        "the first chains replayed, the rest sampled by the recorded+server runtime): the "
        "seconds of methods using them mix two runs (two machines where the CPUs differ).",
    ]


def report(folder: Path) -> tuple[str, dict[str, Any]]:
    ids, methods, chains = collect(folder)
    points = {name: _point(name, rows) for name, rows in methods.items()}
    for name, point in points.items():  # paired, for readers of summary.json
        point["vs_cot"] = paired(methods["cot"], methods[name])
        if "scale" in methods:
            point["vs_scale"] = paired(methods["scale"], methods[name])
    sampling = json.loads((folder / "report.json").read_text())
    sampled, info = sampling["machine"], machine()
    lines = [
        f"# Round 2: {len(ids)} problems, every method on the same samples",
        "",
        f"Written {info['date']} by `python bench/round2_report.py {folder}` (after "
        "`bench/round2.sh`). Sampled on "
        f"{sampled['cores']} cores, {sampled['cpu']} (`report.md`: the sampling run, "
        f"{sampled['date'][:10]}); every method but plain-cot replayed from those calls by the "
        "recorded runtime. Seconds are the model seconds of the calls a method uses, as the "
        "server timed them (plain-cot: wall time in the sampling run): a compute measure, "
        "comparable as ratios here.",
        *_more_chains(folder, chains),
        "",
        *(f"- `{m}` sha256 `{h}`" for m, h in sampling["model_sha256"].items() if h),
        "- packages: " + ", ".join(f"{k} {v}" for k, v in sampled["packages"].items()),
        "",
        "| method | correct (95% CI) | tokens/problem | generated | LM calls | S2 share | "
        "s/problem | vs cot: diff (95% CI), W/L | vs scale (default) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in points.items():
        lines.append(
            f"| {name} | {p['correct']} ({p['ci95'][0]:.2f}-{p['ci95'][1]:.2f}) | "
            f"{p['tokens_per_problem']:.0f} | {p['generated_tokens_per_problem']:.0f} | "
            f"{p['lm_calls_per_problem']:.1f} | {p['system2_fraction']:.2f} | "
            f"{p['seconds_per_problem']} | {_vs(methods['cot'], methods[name])} | "
            f"{_vs(methods.get('scale'), methods[name])} |"
        )
    lines += first_twenty(folder, methods)
    estimators, auroc = estimator_table(folder)
    lines += ["", "## Targets (tuned SCALE, cross-fitted)", "", "| target | result |", "|---|---|"]
    lines += [f"| {t} | {r} |" for t, r in targets(points, auroc)]
    if "tuned" in methods:
        lines += ["", "## Tuned (cross-fitted) against every method", ""]
        for half, other in (("a", "b"), ("b", "a")):
            program = folder / f"tuned-{other}.json"
            if program.is_file():
                found = json.loads(program.read_text())["scale"]["report"]
                lines.append(
                    f"- fold {half} answered by `tuned-{other}.json`: {found['best']['label']} "
                    f"(best of {found['trials']} trials)"
                )
        lines += ["", "| tuned vs | diff (95% CI), W/L, token ratio |", "|---|---|"]
        lines += [
            f"| {name} | {_vs(rows, methods['tuned'])} |"
            for name, rows in methods.items()
            if name != "tuned"
        ]
    lines += [
        "",
        "## Difficulty estimators",
        "",
        "A problem is hard when greedy CoT's answer to it is wrong; a step, when System 1's "
        "greedy answer differs from System 2's in the same context (`scale estimators`).",
        "",
    ]
    lines += estimators
    lines += round3_report.section(folder, methods)
    lines += compile_replay.section(folder)
    plotted = [p for p in points.values() if p["label"] != "plain-cot"]
    title = f"{folder.name}: {len(ids)} problems"
    tradeoff_plot(plotted, folder / "summary.png", title=title)
    tradeoff_plot(plotted, folder / "summary-time.png", title=title, x="seconds_per_problem")
    return "\n".join(lines) + "\n", {"ids": ids, "methods": points, "machine": info}


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/round2-gsm8k-server")
    text, data = report(folder)
    (folder / "summary.md").write_text(text)
    (folder / "summary.json").write_text(json.dumps(data, indent=1) + "\n")
    print(text)
