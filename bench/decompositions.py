"""The decomposition stage alone, through one adapter: how often its first reply parses
(issue 20's target: in at least 95% of problems), with its calls, tokens and steps.

    SCALE_LOCAL_RUNTIME=server python bench/decompositions.py --adapter native \\
        --dataset gsm8k --n 20 --out bench/results/adapter-native/gsm8k-decompose-native.jsonl

One row per problem (resumable: problems already in ``--out`` are skipped; a failed call is
recorded as the row's error and retried on the next run), then the per-problem means as
JSON. The decomposer is the one every decomposing method uses (System 1's profile, ``k`` =
1), so this measures what `uniform-s2` and the step-level presets get from it, at a fraction
of their cost.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from scale.harness.datasets import load_dataset
from scale.models.lm import DEFAULT_MODEL, track
from scale.optimizers import in_parallel
from scale.programs import ProgramSpec


def decompose(program, example) -> dict:
    """One problem's decomposition, its calls and cost, or the error that stopped it."""
    row: dict = {"id": example.id}
    with track() as ledger:
        try:
            pred = program.decomposer(problem=example.problem)
        except Exception as exc:  # a model error or timeout: recorded, the run goes on
            row["error"] = f"{type(exc).__name__}: {exc}"
            pred = None
    usage = ledger.usage()
    row |= {
        "lm_calls": usage.lm_calls,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "seconds": usage.lm_seconds,
    }
    if pred is not None:
        fallbacks = [f.value for f in pred.fallbacks]
        row |= {
            "first_call_parsed": usage.lm_calls == 1 and not fallbacks,
            "subproblems": pred.subproblems,
            "fallbacks": fallbacks,
            "notes": pred.notes,
        }
    return row


def read_rows(path: Path) -> dict[str, dict]:
    """The rows of a results file by problem id; a problem retried keeps its last row."""
    if not path.exists():
        return {}
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def stats(rows: list[dict]) -> dict:
    """Per problem: the share whose first reply parsed, calls, tokens and steps."""
    done = [r for r in rows if "error" not in r]
    n = max(len(done), 1)
    return {
        "problems": len(rows),
        "errors": len(rows) - len(done),
        "first_call_parsed": sum(r["first_call_parsed"] for r in done),
        "first_call_parsed_share": round(sum(r["first_call_parsed"] for r in done) / n, 3),
        "calls": round(sum(r["lm_calls"] for r in done) / n, 2),
        "prompt_tokens": round(sum(r["prompt_tokens"] for r in done) / n),
        "completion_tokens": round(sum(r["completion_tokens"] for r in done) / n),
        "steps": round(sum(len(r["subproblems"]) for r in done) / n, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, choices=("native", "chat", "json"))
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--dataset", required=True, help="a dataset name or JSONL file")
    parser.add_argument("--n", type=int, default=20, help="the first N problems (seed 0)")
    parser.add_argument("--planned", type=int, default=100, help="--n the bench drew from")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per call")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    examples = load_dataset(args.dataset, n=args.planned, seed=0)[: args.n]
    done = read_rows(args.out)
    todo = [e for e in examples if e.id not in done or "error" in done[e.id]]
    program = ProgramSpec(
        method="uniform-s2", model=args.model, adapter=args.adapter, timeout=args.timeout
    ).build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        rows = in_parallel(lambda e: decompose(program, e), todo, args.threads)
        for row in tqdm(rows, total=len(todo), desc=f"decompositions ({args.adapter})"):
            out.write(json.dumps(row) + "\n")
            out.flush()
            done[row["id"]] = row
    print(json.dumps(stats([done[e.id] for e in examples])))


if __name__ == "__main__":
    main()
