"""``scale bench`` and ``scale estimators``: methods and estimators on the same examples."""

from __future__ import annotations

import argparse
from pathlib import Path

from scale.cli.options import (
    UsageError,
    add_data_options,
    add_model_options,
    add_program_options,
    add_threads_option,
    add_tracking_options,
    positive,
    sample_cap,
)
from scale.cli.support import (
    check_writable,
    load_examples,
    models_label,
    require_scale,
    say,
    spec_from_args,
    tracked_run,
)

DEFAULT_METHODS = "plain-cot,cot,vote,adaptive-vote,esc,scale,uniform-s2"


def _methods(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    from scale.bench.run import BENCH_METHODS, REPLAYED

    p = sub.add_parser(
        "bench",
        help="all methods on the same examples: accuracy, cost, curves",
        description="Run each method on the same examples with the same model(s), in rounds "
        "of --round-size problems. Results per method are resumable JSONL files in --out; "
        "report.md, report.json, tradeoff.png and tradeoff-time.png are rewritten after "
        "every round. Voting is sampled once (--vote-samples chains per problem) and "
        "vote@1..k, adaptive-vote and esc are replayed from those samples. The method "
        "options (--preset, --estimator, --gate, ...) configure method 'scale'; the other "
        "methods are fixed configurations.",
    )
    add_data_options(p, n_default=20)
    add_model_options(p)
    add_program_options(p, methods=False, program=False)  # they configure method 'scale'
    p.add_argument(
        "--methods",
        type=_methods,
        default=_methods(DEFAULT_METHODS),
        help=f"comma-separated, from: {', '.join([*BENCH_METHODS, *REPLAYED])} (tuned: the "
        f"--program; {', '.join(REPLAYED)}: replayed from vote) (default: {DEFAULT_METHODS}, "
        "plus tuned with --program)",
    )
    p.add_argument(
        "--program",
        metavar="TUNED.json",
        help="a program saved by `scale compile`, benchmarked as method 'tuned'; refused if it "
        "was compiled on any of the benchmark's examples",
    )
    p.add_argument(
        "--vote-samples",
        type=sample_cap,
        default=8,
        help="chains sampled per problem for vote; vote@1..N, adaptive-vote and esc are "
        "replayed from them (default: %(default)s)",
    )
    add_threads_option(p)
    p.add_argument(
        "--round-size",
        type=positive,
        default=5,
        metavar="N",
        help="problems per round: each round runs every method on the next N problems, then "
        "rewrites the report, so a run stopped after hours still has a paired report "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--rounds",
        type=positive,
        metavar="K",
        help="stop after K rounds, the rest left planned (e.g. to add a method to the "
        "problems done so far; rerun without it to go on) (default: all)",
    )
    p.add_argument("--out", required=True, help="results folder, e.g. bench/results/NAME")
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="run again the examples recorded with an error (their new row supersedes it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_tracking_options(p)
    p.set_defaults(run=run_bench)

    p = sub.add_parser(
        "estimators",
        help="compare difficulty estimators on the same steps and problems",
        description="For each problem: System 1's greedy answer to the whole problem (wrong = "
        "hard) and, with every step on System 2 as the reference, System 1's greedy answer "
        "to each step (different = hard), with every estimator's score on the same replies. "
        "Reports each estimator's AUROC for System 1's failure at both levels, its score "
        "distribution and its best threshold.",
    )
    add_data_options(p, n_default=10)
    add_model_options(p)
    add_program_options(p, methods=False)
    p.add_argument(
        "--estimators",
        default="self,logprob,agreement,confidence,confidence-mean,confidence-total,check,"
        "agreement+check",
        help="estimators to compare, comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--levels",
        default="steps,problems",
        help="what to label: steps (System 1 against System 2 in context; decomposes each "
        "problem and runs System 2 on every step) and/or problems (System 1's whole-problem "
        "answer against the gold one) (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="folder for estimators.json/.md and outcomes.jsonl; labelled.jsonl there keeps "
        "each problem's outcomes as it is labelled, and a rerun with the same settings "
        "resumes from it",
    )
    add_threads_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_tracking_options(p)
    p.set_defaults(run=run_estimators, method="scale")


def run_bench(args: argparse.Namespace) -> int:
    from scale.bench.report import model_checksums
    from scale.bench.run import BENCH_METHODS, REPLAYED, PlainCoT, run_bench
    from scale.programs.io import refuse_overlap
    from scale.programs.spec import SCALE_OPTIONS, ProgramSpec

    check_writable(args.out, folder=True)
    unknown = [m for m in args.methods if m not in BENCH_METHODS and m not in REPLAYED]
    if unknown:
        raise UsageError(
            f"unknown methods {unknown}: choose from {', '.join([*BENCH_METHODS, *REPLAYED])}"
        )
    methods = list(args.methods)
    if args.program and "tuned" not in methods:
        methods.append("tuned")
    if "tuned" in methods and not args.program:
        raise UsageError("method 'tuned' needs --program TUNED.json")
    if any(m in REPLAYED for m in methods) and "vote" not in methods:
        methods.insert(0, "vote")
        say("note: adaptive-vote and esc are replayed from vote's samples: vote added")
    spec = spec_from_args(args, system2_samples=None, program=None)
    spec.build()  # refuses unknown models before any work
    examples = load_examples(args)
    if args.program:
        refuse_overlap(args.program, [e.id for e in examples], getattr(args, "tracking_uri", None))

    def build(name: str):
        if name == "plain-cot":
            return PlainCoT(
                spec.system_models[1],
                max_tokens=spec.system2_max_tokens or 1024,
                api_base=spec.api_base,
                api_key=spec.api_key,
                timeout=spec.timeout,
                num_retries=spec.retries,
            )
        fields = {"program": None, **BENCH_METHODS[name]}  # only 'tuned' is the --program
        if name != "scale":  # the method options configure 'scale' alone
            fields = {**dict.fromkeys(SCALE_OPTIONS), "preset": ProgramSpec.preset, **fields}
        if name in ("vote", "pot-vote"):
            fields["system2_samples"] = args.vote_samples
        if name == "tuned":
            fields["program"] = args.program
        return spec_from_args(args, **fields).build()

    with tracked_run(args, f"bench {args.dataset}", spec, methods=",".join(methods)) as tracker:
        report = run_bench(
            examples,
            methods,
            build,
            args.out,
            dataset=args.dataset,
            models=models_label(spec),
            vote_samples=args.vote_samples,
            checksums=model_checksums([spec.model, *spec.system_models]),
            round_size=args.round_size,
            rounds=args.rounds,
            threads=args.threads,
            retry_errors=args.retry_errors,
            tracker=tracker,
            progress=not args.quiet,
        )
    print((Path(args.out) / "report.md").read_text())
    every = [m["summary"] for m in report.get("methods", {}).values()]
    if every and all(s["errors"] == s["n"] for s in every):
        say("scale: every example of every method ended in an error; see the results files")
        return 1
    return 0


def run_estimators(args: argparse.Namespace) -> int:
    from scale.bench.report import estimator_report, model_checksums
    from scale.programs import check_estimator
    from scale.programs.io import refuse_overlap

    check_writable(args.out, folder=True)
    estimators = tuple(e.strip() for e in args.estimators.split(",") if e.strip())
    levels = tuple(v.strip() for v in args.levels.split(",") if v.strip())
    if not levels or set(levels) - {"steps", "problems"}:
        raise UsageError(f"--levels takes steps and/or problems, got {args.levels!r}")
    for name in estimators:
        try:
            check_estimator(name)
        except ValueError as exc:
            raise UsageError(f"--estimators: {exc}") from None
    examples = load_examples(args)
    spec = spec_from_args(args)
    if spec.program:
        refuse_overlap(spec.program, [e.id for e in examples], spec.tracking_uri)
    program = spec.build()
    require_scale(program)
    with tracked_run(
        args, f"estimators {args.dataset}", spec, estimators=",".join(estimators)
    ) as tracker:
        estimator_report(
            program,
            examples,
            args.out,
            estimators=estimators,
            levels=levels,
            models=models_label(spec),
            checksums=model_checksums([spec.model, *spec.system_models]),
            tracker=tracker,
            threads=args.threads,
            progress=not args.quiet,
        )
    print((Path(args.out) / "estimators.md").read_text())
    return 0
