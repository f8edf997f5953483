"""``scale eval``: one method on a dataset, resumable."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from scale.cli.options import (
    UsageError,
    add_data_options,
    add_model_options,
    add_program_options,
    add_resume_options,
    add_threads_option,
    add_tracking_options,
    positive,
    sample_cap,
)
from scale.cli.support import (
    check_resume,
    check_writable,
    load_examples,
    say,
    spec_from_args,
    tracked_run,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a method on a dataset (resumable)",
        description="Evaluate a method on a dataset. Each example's result is appended to "
        "--out as it finishes; --resume continues.",
    )
    add_data_options(p)
    add_model_options(p)
    add_program_options(p)
    add_threads_option(p)
    p.add_argument("--out", help="results JSONL (default: a new temporary file)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget-tokens",
        type=positive,
        metavar="N",
        help="spend at most N tokens per problem on average over the whole dataset: every "
        "problem gets System 2's greedy reply, then rounds of samples go to the problems "
        "whose answers are most split per token (majority answer), never over the budget; "
        "replaces --method (default: no budget)",
    )
    budget.add_argument(
        "--budget-total",
        type=positive,
        metavar="N",
        help="as --budget-tokens, with N tokens for the whole dataset",
    )
    p.add_argument(
        "--budget-cap",
        type=sample_cap,
        default=8,
        help="with a budget: the most replies one problem gets (default: %(default)s)",
    )
    add_resume_options(p)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_tracking_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from scale.optimizers import evaluate
    from scale.programs.io import fingerprint, refuse_overlap

    check_resume(args)
    if args.out:
        check_writable(args.out)
    examples = load_examples(args)
    spec = spec_from_args(args)
    if spec.program:
        refuse_overlap(spec.program, [e.id for e in examples], spec.tracking_uri)
    program = spec.build()
    out = args.out or str(Path(tempfile.mkdtemp(prefix="scale-eval-")) / "results.jsonl")
    if args.budget_tokens or args.budget_total:
        return _run_budget(args, spec, examples, out)
    with tracked_run(args, f"eval {program.method} {args.dataset}", spec) as tracker:
        rows, summary = evaluate(
            program,
            examples,
            threads=args.threads,
            out=out,
            identity=fingerprint(program) | {"dataset": args.dataset},
            resume=args.resume,
            retry_errors=args.retry_errors,
            progress=not args.quiet,
            desc=f"{program.method} {args.dataset}",
        )
        tracker.metrics(summary.to_dict())
        tracker.artifact(out)
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print("\n".join(summary.lines()))
        print(f"results: {out}")
    if rows and summary.errors == len(rows):
        say(f"scale: every one of the {len(rows)} examples ended in an error; see {out}")
        return 1
    return 0


def _run_budget(args: argparse.Namespace, spec, examples: list, out: str) -> int:
    from scale.harness.budgeted import run_budget
    from scale.programs.io import fingerprint

    if spec.method not in ("scale", "cot") or spec.program:
        raise UsageError(
            "--budget-tokens samples System 2's chains itself: it takes the System 2 options "
            "(--model, --system2-*), not another --method or a --program"
        )
    program = dataclasses.replace(spec, method="cot").build()
    budget = args.budget_total or args.budget_tokens * len(examples)
    with tracked_run(args, f"eval budget {budget} {args.dataset}", spec) as tracker:
        rows, summary, sampler = run_budget(
            program.system2,
            examples,
            budget_tokens=budget,
            out=out,
            identity=fingerprint(program) | {"dataset": args.dataset},
            resume=args.resume,
            cap=args.budget_cap,
            threads=args.threads,
        )
        tracker.metrics(summary.to_dict())
        tracker.artifact(out)
    spent = sum(r.usage["total_tokens"] for r in rows)
    if args.json:
        print(json.dumps(summary.to_dict() | {"budget_tokens": budget, "spent_tokens": spent}))
    else:
        print("\n".join(summary.lines()))
        print(f"budget: {spent} of {budget} tokens spent; {sampler.calls} model calls this run")
        print(f"results: {out}")
    return 0
