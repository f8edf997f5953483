"""Tuned SCALE by cross-fitting, on every problem of a round-2 folder: each half's rows come
from the program compiled on the other half (``crossfit-a/``, ``crossfit-b/``), paired with
every method of ``replayed/`` and with ``plain-cot`` on the same problems.

    python bench/crossfit_report.py bench/results/round2-gsm8k-server

Writes ``crossfit.md`` in the folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scale.bench import replayed_methods
from scale.optimizers import read_results, summarize
from scale.report import machine, paired


def _settings(program: Path) -> str:
    """What a tuned program's compile chose, among how many trials."""
    found = json.loads(program.read_text())["scale"]["report"]
    return f"{found['best']['label']} (best of {found['trials']} trials)"


def report(folder: Path) -> str:
    ids = [json.loads(line)["id"] for line in (folder / "problems.jsonl").open()]
    tuned = {
        r.id: r for half in "ab" for r in read_results(folder / f"crossfit-{half}/tuned.jsonl")
    }
    methods = {p.stem: read_results(p) for p in sorted((folder / "replayed").glob("*.jsonl"))}
    methods |= replayed_methods(methods["vote"], 5, methods["cot"])
    methods["plain-cot"] = read_results(folder / "plain-cot.jsonl")
    rows = [tuned[i] for i in ids if i in tuned]
    s = summarize(rows, 0.0)
    lines = [
        f"# Tuned SCALE, cross-fitted, on {len(rows)} of {len(ids)} problems",
        "",
        f"Written {machine()['date']} by `python bench/crossfit_report.py {folder}`. Problems "
        "of fold-a are answered by the program compiled on fold-b (`tuned-b.json`) and "
        "the other way round; every other method's rows are from `replayed/` (`plain-cot`: "
        "the sampling run).",
        "",
    ]
    for half, other in (("a", "b"), ("b", "a")):
        lines.append(
            f"- fold {half}: `tuned-{other}.json`: {_settings(folder / f'tuned-{other}.json')}"
        )
    lines += [
        "",
        f"tuned: {s.correct}/{s.n} correct (95% CI {s.ci95[0]:.2f}-{s.ci95[1]:.2f}), "
        f"{s.tokens_per_problem:.0f} tokens/problem, {s.lm_calls_per_problem:.1f} calls, "
        f"System 2 share {s.system2_fraction:.2f}",
        "",
        "| tuned vs | n | accuracy diff (95% CI) | W/L | token ratio | time ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, base in methods.items():
        vs = paired(base, rows)
        if vs["n"]:
            lines.append(
                f"| {name} | {vs['n']} | {vs['accuracy_diff']:+.3f} ({vs['ci95'][0]:+.3f}, "
                f"{vs['ci95'][1]:+.3f}) | {vs['wins']}/{vs['losses']} | {vs['token_ratio']} | "
                f"{vs['time_ratio']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/round2-gsm8k-server")
    (folder / "crossfit.md").write_text(report(folder))
    print((folder / "crossfit.md").read_text())
