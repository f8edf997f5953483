"""``scale eval``: one method on a dataset, resumable."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from scale.cli.options import (
    add_data_options,
    add_model_options,
    add_program_options,
    add_resume_options,
    add_threads_option,
    add_tracking_options,
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
