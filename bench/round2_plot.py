"""Accuracy against tokens per problem for a round-2 folder: every benchmarked method
(``report.json``) and the default program gated on the greedy reply's logprob confidence
at each gate (``sweep-confidence/sweep.json``), on the same problems.

    python bench/round2_plot.py bench/results/round2-gsm8k-server

Writes ``tradeoff-confidence.png`` in the folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scale.plots import tradeoff_plot
from scale.report import method_family

SWEPT = "scale, confidence gate"


def _gate(gate: float | None) -> str:
    return "no gate" if gate is None else f"gate {gate:g}"


def plot(folder: Path) -> Path:
    report = json.loads((folder / "report.json").read_text())
    problems = (folder / "problems.jsonl").read_text().splitlines()
    if len(problems) != report["n"]:
        raise SystemExit(
            f"{folder}: the sweep's problems.jsonl has {len(problems)} problems, the report "
            f"{report['n']}: rerun bench/round2.sh so both cover the same ones"
        )
    points = [
        {"label": name, "family": method_family(name), **m["summary"]}
        for name, m in report["methods"].items()
        if name != "vote"  # the same as its replayed vote@k
    ]
    sweep = json.loads((folder / "sweep-confidence" / "sweep.json").read_text())
    points += [
        {**t, "label": _gate(t["settings"]["gate"]), "family": SWEPT}
        for t in sweep["trials"]
        if not t["failure"]
    ]
    return tradeoff_plot(
        points,
        folder / "tradeoff-confidence.png",
        title=f"{report['dataset']}, n={report['n']}: accuracy vs tokens per problem",
    )


if __name__ == "__main__":
    print(plot(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/round2-gsm8k-server")))
