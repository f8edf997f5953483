"""Throughput of the program sandbox's worker pool on the programs the model wrote.

    python bench/sandbox_throughput.py [WORKERS ...]

Runs every first program of round 3's greedy ``pot`` rows (200: GSM8K and MATH-500 L1-3)
through ``scale.sandbox.Sandbox`` with each pool size (default 1 and 2), and writes the
programs per second, the seconds per program and what the runs ended with to
``bench/results/round3-programs/sandbox-throughput.{json,md}``. Nothing else should run.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from scale.bench.report import machine
from scale.optimizers import read_results
from scale.sandbox import Sandbox

OUT = Path(__file__).resolve().parent / "results" / "round3-programs"


def programs() -> list[str]:
    found = []
    for dataset in ("gsm8k", "math500-l13"):
        for row in read_results(OUT / dataset / "pot.jsonl"):
            samples = row.recorded_samples()
            if samples and samples[0].get("programs"):
                found.append(samples[0]["programs"][0])
    return found


def measure(sources: list[str], workers: int) -> dict:
    pool = Sandbox(workers=workers)
    pool.command()  # the check run is not timed
    started = time.perf_counter()
    runs = pool.map(sources)
    wall = time.perf_counter() - started
    ended = Counter("ok" if r.ok else r.error.split(":")[0] for r in runs)
    return {
        "workers": workers,
        "programs": len(sources),
        "wall_seconds": round(wall, 1),
        "programs_per_second": round(len(sources) / wall, 2),
        "median_seconds_per_program": round(statistics.median(r.seconds for r in runs), 2),
        "ended": dict(ended.most_common()),
    }


def main(argv: list[str]) -> None:
    sources = programs()
    results = [measure(sources, int(w)) for w in (argv or ["1", "2"])]
    info = machine()
    found = {"machine": info, "command": " ".join(["python", *sys.argv]), "runs": results}
    (OUT / "sandbox-throughput.json").write_text(json.dumps(found, indent=1) + "\n")
    lines = [
        "# Program sandbox throughput",
        "",
        f"`{found['command']}` on {info['date'][:10]}, {info['cores']} cores, {info['cpu']}: "
        f"the {len(sources)} first programs of the greedy pot rows, each in its own bwrap "
        "sandbox (namespaces, seccomp, rlimits; a fresh Python importing what it uses).",
        "",
        "| workers | programs/s | median s/program | wall s | ended |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        ended = ", ".join(f"{k} {v}" for k, v in r["ended"].items())
        lines.append(
            f"| {r['workers']} | {r['programs_per_second']} | "
            f"{r['median_seconds_per_program']} | {r['wall_seconds']} | {ended} |"
        )
    (OUT / "sandbox-throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
