"""Compiling that pays, cross-fitted on round 2's recorded calls (``scale compile --replay``).

    python bench/compile_replay.py [--model MODEL]

For each dataset, each feature set (CoT replies and chains; with the round-3 greedy programs
too) and each objective (accuracy; accuracy at no more than the default's tokens), the
allocation is compiled on one half of the round-2 problems (``fold-a``/``fold-b``: K-fold
selection, nested estimate, incumbent rule against the default program) and answers the
other half; both halves together give 100 cross-fitted answers, paired with the default and
CoT on the same recorded calls. Writes ``bench/results/compile-replay/``: ``report.md``,
``report.json``, per dataset the rows (``DATASET/NAME.jsonl``, read into the round-2
summaries) and the compiled programs (``DATASET/NAME-FOLD.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from scale.bench.report import machine
from scale.optimizers import ResultRow, ResultsFile
from scale.optimizers.recipes import Played, Recipe, apply_recipe, load_recorded
from scale.optimizers.selection import (
    DEFAULT_RULE,
    Fitter,
    Objective,
    advantage,
    compile_recorded,
    estimate,
    signal_quality,
)
from scale.programs import build_program, save_program

ROOT = Path(__file__).resolve().parent / "results"
OUT = ROOT / "compile-replay"
DATASETS = {
    "gsm8k": (ROOT / "round2-gsm8k-server", ROOT / "round3-programs" / "gsm8k"),
    "math500-l13": (ROOT / "round2-math500-l13", ROOT / "round3-programs" / "math500-l13"),
}
DEFAULT = Recipe("agreement", 0.0, DEFAULT_RULE)  # the efficient preset, as a recipe
COT = Recipe("none", 1.0, DEFAULT_RULE)
FEATURES = {"chains": False, "programs": True}
OBJECTIVES = ("accuracy", "default-budget")


def _golds(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.open()]
    return {str(r["id"]): str(r["answer"]) for r in rows}


def _row(problem_id: str, gold: str, played: Played) -> ResultRow:
    step = {"subproblem": problem_id, "system": played.system, "answer": played.answer}
    step |= {"difficulty": played.score}
    cost = played.cost
    usage = {
        "total_tokens": cost.tokens,
        "prompt_tokens": cost.tokens - cost.generated,
        "completion_tokens": cost.generated,
        "lm_calls": cost.calls,
    }
    return ResultRow(
        problem_id,
        gold,
        played.answer,
        played.correct,
        steps=[step],
        usage=usage,
        seconds=round(cost.seconds, 3),
    )


def _objective(kind: str, fitter: Fitter, train) -> Objective:
    if kind == "accuracy":
        return Objective("accuracy")
    spent = np.mean([p.tokens for p in fitter.play(DEFAULT, train)])
    return Objective("budget", budget_tokens=float(spent))


def crossfit(dataset: str, programs: bool, kind: str, model: str | None) -> dict:
    """Compile on each half, answer the other; the cross-fitted rows and what each fold said."""
    folder, round3 = DATASETS[dataset]
    pot = round3 / "pot.jsonl" if programs else None
    name = f"{'programs' if programs else 'chains'}-{kind}"
    folds, rows = {}, {}
    for train_fold, test_fold in (("a", "b"), ("b", "a")):
        train, max_tokens = load_recorded(
            folder / "chains-8", _golds(folder / f"fold-{train_fold}.jsonl"), pot
        )
        test, _ = load_recorded(
            folder / "chains-8", _golds(folder / f"fold-{test_fold}.jsonl"), pot
        )
        fitter = Fitter(max_tokens)
        objective = _objective(kind, fitter, train)
        compiled = compile_recorded(train, DEFAULT, objective, max_tokens=max_tokens)
        written = fitter.play(compiled.recipe, test)
        held_selected = estimate(fitter.play(compiled.selected, test))
        nested = compiled.report["nested"]
        folds[f"{train_fold}->{test_fold}"] = {
            "written": compiled.report["written"],
            "why": compiled.report["why"],
            "nested": {k: nested[k] for k in ("accuracy", "ci95", "tokens_per_problem")},
            "selection_held_out": held_selected,
            "default_held_out": estimate(fitter.play(DEFAULT, test)),
            "nested_within_held_out_ci": held_selected["ci95"][0]
            <= nested["accuracy"]
            <= held_selected["ci95"][1],
            "replaced": compiled.replaced,
            "selected": compiled.selected.label,
            "live_equals_replay": None,
            "live_differs_on": [],
        }
        for problem, played in zip(test, written, strict=True):
            rows[problem.id] = played
        if model:
            program = build_program("scale", model=model)
            apply_recipe(program, compiled.recipe)
            path = save_program(
                program,
                OUT / dataset / f"{name}-{train_fold}.json",
                report=compiled.report,
                dataset=str(folder / f"fold-{train_fold}.jsonl"),
                val_ids=[p.id for p in train],
            )
            live = run_live(path, model, round3 / "recordings", folder / f"fold-{test_fold}.jsonl")
            differ = [
                p.id for p in test if _calls(live[p.id]) != _calls(_row(p.id, p.gold, rows[p.id]))
            ]
            fold = folds[f"{train_fold}->{test_fold}"]
            fold["live_equals_replay"] = f"{len(test) - len(differ)}/{len(test)}"
            fold["live_differs_on"] = differ
    return {"name": name, "folds": folds, "rows": rows}


def run_live(program: Path, model: str, recordings: Path, dataset: Path) -> dict[str, ResultRow]:
    """``program`` run by ``scale bench`` on the recorded runtime (every call answered from
    the recordings, programs run again in the sandbox) on ``dataset``: its rows by id."""
    from scale.cli import main as scale_main
    from scale.models import local
    from scale.optimizers import read_results

    out = program.parent / "live" / program.stem
    n = sum(1 for _ in dataset.open())
    argv = ["bench", "--dataset", str(dataset), "--n", str(n), "--round-size", str(n)]
    argv += ["--methods", "tuned", "--program", str(program), "--model", model]
    argv += ["--runtime", "recorded", "--quiet", "--threads", "2", "--no-mlflow", "--out", str(out)]
    shutil.rmtree(out, ignore_errors=True)
    os.environ["SCALE_RECORDINGS"] = str(recordings)
    try:
        if scale_main(argv) != 0:
            raise RuntimeError(f"scale {' '.join(argv)} failed")
    finally:
        local.set_runtime(None)
        del os.environ["SCALE_RECORDINGS"]
    for plot in out.glob("*.png"):
        plot.unlink()
    return {row.id: row for row in read_results(out / "tuned.jsonl")}


def _calls(row: ResultRow) -> tuple:
    return row.predicted, row.usage["total_tokens"], row.usage["lm_calls"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        help="write the compiled programs for this model too (e.g. local/qwen2.5-coder-1.5b)",
    )
    args = parser.parse_args(argv)
    report: dict = {"written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    report["machine"] = machine()
    lines = [
        "# Compiling on recorded calls, cross-fitted (issue 43)",
        "",
        f"Written {report['written']} by `python bench/compile_replay.py"
        f"{' --model ' + args.model if args.model else ''}` on {report['machine']['cores']} "
        f"cores, {report['machine']['cpu']} "
        f"(Python {platform.python_version()}); no model calls: every recipe is replayed on "
        "round 2's recorded calls (CoT's greedy reply with logprobs, vote's 8 chains) and "
        "round 3's greedy programs.",
        "",
        "Each half of the 100 round-2 problems is answered by the program compiled on the "
        "other half: 5-fold selection over the candidates (estimators `none`, `agreement`, "
        "`confidence-total`, `confidence-mean`, `calibrated`, and `calibrated+program` where "
        "programs are given; gates at 25/50/75% of problems on System 1; four greedy-first "
        "Adaptive-Consistency rules; CoT), a nested 5-fold estimate of the selection, and "
        "the incumbent rule: the default program is kept unless the lower bound of the "
        "selection's paired advantage (bootstrap 95%) is above 0. Objectives: `accuracy` "
        "(ties to fewer tokens) and `default-budget` (accuracy at no more than the default "
        "program's tokens on the dev half).",
    ]
    for dataset, (folder, round3) in DATASETS.items():
        ids = [json.loads(line)["id"] for line in (folder / "problems.jsonl").open()]
        golds = _golds(folder / "problems.jsonl")
        everything, max_tokens = load_recorded(folder / "chains-8", golds, round3 / "pot.jsonl")
        fitter = Fitter(max_tokens)
        base = {
            "default": fitter.play(DEFAULT, everything),
            "CoT": fitter.play(COT, everything),
        }
        results = [
            crossfit(dataset, p, kind, args.model) for p in FEATURES.values() for kind in OBJECTIVES
        ]
        report[dataset] = {
            "signals": signal_quality(fitter, everything, 5, True),
            "base": {k: estimate(v) for k, v in base.items()},
            "runs": [],
        }
        lines += ["", f"## {dataset} (n = {len(ids)})", ""]
        lines += [
            "| method | correct (95% CI) | tokens/problem "
            "| vs default: points (95% CI), W/L, tokens | vs CoT |",
            "|---|---|---|---|---|",
        ]
        for label, played in base.items():
            s = estimate(played)
            lines.append(
                f"| {label} | {round(s['accuracy'] * s['n'])} "
                f"({s['ci95'][0]:.2f}-{s['ci95'][1]:.2f}) | {s['tokens_per_problem']:.0f} | | |"
            )
        for result in results:
            played = [result["rows"][i] for i in ids]
            rows = [_row(i, golds[i], p) for i, p in zip(ids, played, strict=True)]
            path = OUT / dataset / f"{result['name']}.jsonl"
            path.unlink(missing_ok=True)
            identity = {"method": f"tuned/{result['name']}", "dataset": dataset}
            out = ResultsFile(path, identity=identity, resume=False)
            for row in rows:
                out.write(row)
            out.close()
            s = estimate(played)
            cells = []
            for other in ("default", "CoT"):
                d = advantage(played, base[other], Objective("accuracy"))
                cells.append(
                    f"{d['points']:+.0f} ({d['ci95'][0]:+.0f}, {d['ci95'][1]:+.0f}), "
                    f"{d['wins']}W/{d['losses']}L, x{d['token_ratio']}"
                )
            lines.append(
                f"| tuned/{result['name']} | {round(s['accuracy'] * s['n'])} "
                f"({s['ci95'][0]:.2f}-{s['ci95'][1]:.2f}) | {s['tokens_per_problem']:.0f} "
                f"| {cells[0]} | {cells[1]} |"
            )
            report[dataset]["runs"].append(
                {"name": result["name"], "cross_fitted": s, "folds": result["folds"]}
            )
        lines += [
            "",
            "What each fold wrote, and the nested estimate against the held-out half:",
            "",
        ]
        lines += [
            "| run | fold | written | why | nested estimate | selection on the held-out half "
            "| written program run on the recorded runtime = replay |",
            "|---|---|---|---|---|---|---|",
        ]
        for run in report[dataset]["runs"]:
            for fold, f in run["folds"].items():
                n, h = f["nested"], f["selection_held_out"]
                inside = "inside" if f["nested_within_held_out_ci"] else "OUTSIDE"
                live = f["live_equals_replay"] or "not run"
                lines.append(
                    f"| {run['name']} | {fold} | {f['written']} | {f['why']} | "
                    f"{n['accuracy']:.2f} at {n['tokens_per_problem']:.0f} tokens | "
                    f"{h['accuracy']:.2f} ({h['ci95'][0]:.2f}-{h['ci95'][1]:.2f}) at "
                    f"{h['tokens_per_problem']:.0f} tokens: estimate {inside} its CI | {live} |"
                )
        runs = report[dataset]["runs"]
        differ = sorted(
            {i for r in runs for f in r["folds"].values() for i in f["live_differs_on"]}
        )
        if differ:
            lines += [
                "",
                "Where the written program, run on the recorded runtime, differs from its "
                f"replay: {', '.join(differ)}. The recorded runtime runs each recorded program "
                "again in the sandbox; there the program answered otherwise than when it was "
                "recorded, so the live vote has one chain more or fewer.",
            ]
        lines += [
            "",
            "Signals for System 1's failure on all 100 problems (calibrated: out of fold):",
            "",
        ]
        lines += ["| signal | AUROC | Brier (of P(right)) |", "|---|---|---|"]
        for name, q in report[dataset]["signals"].items():
            lines.append(f"| {name} | {q['auroc']} | {q['brier']} |")
    lines += targets(report)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def targets(report: dict) -> list[str]:
    """The issue's targets, each met or missed with its numbers."""
    lines = ["", "## Targets", "", "| target | dataset | result |", "|---|---|---|"]
    plus_two = []
    for dataset in DATASETS:
        runs = {r["name"]: r for r in report[dataset]["runs"]}
        base = report[dataset]["base"]
        default, cot = base["default"], base["CoT"]
        for name, run in runs.items():
            s = run["cross_fitted"]
            kept = all(not f["replaced"] for f in run["folds"].values())
            cheap = s["accuracy"] >= default["accuracy"] - 0.01 and (
                s["tokens_per_problem"] <= 0.75 * default["tokens_per_problem"]
            )
            met = (kept or cheap) and s["accuracy"] >= cot["accuracy"]
            how = (
                "the incumbent kept in both halves"
                if kept
                else (
                    f"{s['accuracy']:.2f} vs {default['accuracy']:.2f} at "
                    f"{s['tokens_per_problem'] / default['tokens_per_problem']:.2f}x the tokens"
                )
            )
            lines.append(
                f"| {name}: >= default - 1 at <= 0.75x tokens, or the default kept; never "
                f"below CoT | {dataset} | {'met' if met else '**missed**'}: {how} |"
            )
            if name.startswith("programs"):
                gain = s["accuracy"] - default["accuracy"]
                ratio = s["tokens_per_problem"] / default["tokens_per_problem"]
                plus_two.append(
                    (
                        gain >= 0.02 and ratio <= 1.0,
                        f"{dataset} {name}: {gain * 100:+.0f} at {ratio:.2f}x",
                    )
                )
        inside = [
            f["nested_within_held_out_ci"] for r in runs.values() for f in r["folds"].values()
        ]
        lines.append(
            f"| the nested estimate within the held-out 95% CI | {dataset} | "
            f"{'met' if all(inside) else '**missed**'}: {sum(inside)}/{len(inside)} compiles |"
        )
        q = report[dataset]["signals"]
        best = max(v["auroc"] for k, v in q.items() if not k.startswith("calibrated"))
        ours = q["calibrated+program"]
        lines.append(
            f"| calibrated's Brier and AUROC beside the raw signals | {dataset} | reported: "
            f"calibrated+program AUROC {ours['auroc']}, Brier {ours['brier']}; the best raw "
            f"AUROC {best} |"
        )
    lines.append(
        "| with program features: >= default + 2 at <= its tokens on one dataset | both | "
        f"{'met' if any(m for m, _ in plus_two) else '**missed**'}: "
        + "; ".join(t for _, t in plus_two)
        + " |"
    )
    return lines


ROUND2 = {folder.name: dataset for dataset, (folder, _) in DATASETS.items()}


def collect(folder: Path, ids: list[str]) -> dict[str, list[ResultRow]]:
    """The cross-fitted rows of ``folder``'s dataset, as methods of its round-2 summary."""
    from scale.optimizers import read_results

    dataset = ROUND2.get(folder.name)
    found: dict[str, list[ResultRow]] = {}
    for path in sorted((OUT / dataset).glob("*.jsonl")) if dataset else []:
        rows = {r.id: r for r in read_results(path)}
        if all(i in rows for i in ids):
            found[f"tuned/replay {path.stem}"] = [rows[i] for i in ids]
    return found


def section(folder: Path) -> list[str]:
    """A pointer from the round-2 summary to the compile report, with its verdicts."""
    dataset = ROUND2.get(folder.name)
    path = OUT / "report.json"
    if dataset is None or not path.is_file():
        return []
    report = json.loads(path.read_text())
    lines = [
        "",
        "## Compiling on recorded calls (round 3, cross-fitted)",
        "",
        "Rows `tuned/replay …`: `bench/compile_replay.py` compiled on each half by "
        "`scale compile --replay` (5-fold selection, nested estimate, incumbent rule against "
        "the default) and answered the other half; details in "
        "[`compile-replay/report.md`](../compile-replay/report.md).",
        "",
        "| run | fold | wrote | why |",
        "|---|---|---|---|",
    ]
    for run in report[dataset]["runs"]:
        for fold, f in run["folds"].items():
            lines.append(f"| {run['name']} | {fold} | {f['written']} | {f['why']} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
