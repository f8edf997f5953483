"""The runtime measurement written up: ``python bench/runtime_report.py bench/results/runtime``
reads what ``bench/runtime.sh`` wrote and writes ``report.md`` beside it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scale.grading.verify import is_equivalent
from scale.optimizers import read_results

RUNTIMES = ("inproc", "server")


def main(folder: Path) -> str:
    lines = ["# Local runtimes: in-process llama.cpp against the managed llama-server", ""]
    machine = json.loads((folder / "inproc" / "throughput.json").read_text())["machine"]
    lines += [
        f"Machine: {machine['cores']} cores, {machine['cpu']}; {machine['date']}. Model "
        "`local/qwen2.5-coder-1.5b`. Command: `bench/runtime.sh bench/results/runtime` (nothing "
        "else running; each runtime with an empty DSPy cache; the server with 4 slots and "
        "`--threads 4`, in-process `--threads 1`).",
        "",
        "## Generated tokens per second (200-token replies at temperature 0.7)",
        "",
        "| concurrent requests | in-process | server | server / in-process |",
        "|---|---|---|---|",
    ]
    speed = {r: json.loads((folder / r / "throughput.json").read_text())["rows"] for r in RUNTIMES}
    for a, b in zip(speed["inproc"], speed["server"], strict=True):
        ratio = b["tokens_per_s"] / a["tokens_per_s"]
        lines.append(
            f"| {a['concurrent']} | {a['tokens_per_s']} | {b['tokens_per_s']} | {ratio:.2f} |"
        )
    lines += [
        "",
        "## The project's methods on the same 10 GSM8K problems",
        "",
        "| method | runtime | correct | wall s per problem | tokens/problem | prompt tokens "
        "evaluated / sent |",
        "|---|---|---|---|---|---|",
    ]
    walls: dict[tuple[str, str], float] = {}
    for method, sub in (("cot", ""), ("vote", ""), ("scale", "scale")):
        for runtime in RUNTIMES:
            rows = read_results(folder / runtime / sub / f"{method}.jsonl")
            if not (folder / runtime / sub / "report.json").is_file():  # the run was cut short
                lines.append(f"| {method} | {runtime} | incomplete: {len(rows)} rows | - | - | - |")
                continue
            report = json.loads((folder / runtime / sub / "report.json").read_text())
            summary = report["methods"][method]["summary"]
            sent = sum(r.usage.get("prompt_tokens", 0) for r in rows)
            evaluated = [r.usage.get("prompt_evaluated") for r in rows]
            reuse = (
                f"{sum(evaluated) / sent:.2f}"
                if all(e is not None for e in evaluated) and sent
                else "-"
            )
            wall = summary["wall_s"] / summary["n"]
            walls[method, runtime] = wall
            lines.append(
                f"| {method} | {runtime} | {summary['correct']}/{summary['n']} | {wall:.1f} | "
                f"{summary['tokens_per_problem']:.0f} | {reuse} |"
            )
    lines += ["", "Speed-up of the server per problem (in-process wall / server wall):", ""]
    for method in ("cot", "vote", "scale"):
        if (method, "inproc") in walls and (method, "server") in walls:
            lines.append(f"- {method}: {walls[method, 'inproc'] / walls[method, 'server']:.2f}x")
        else:
            lines.append(f"- {method}: not measured (a run was cut short)")
    same = [
        is_equivalent(a.predicted, b.predicted) or a.predicted == b.predicted
        for a, b in zip(
            sorted(read_results(folder / "inproc" / "cot.jsonl"), key=lambda r: r.id),
            sorted(read_results(folder / "server" / "cot.jsonl"), key=lambda r: r.id),
            strict=True,
        )
    ]
    lines += [
        "",
        f"Same answer at temperature 0 (cot): {sum(same)} of {len(same)} problems.",
        "",
        "Peak resident memory (kB, sampled every 2 s, the scale process plus llama-server):",
        "",
    ]
    for runtime in RUNTIMES:
        for line in (folder / f"memory-{runtime}.txt").read_text().splitlines():
            lines.append(f"- {runtime}: {line}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/runtime")
    text = main(folder)
    (folder / "report.md").write_text(text)
    print(text)
