"""``scale compile --replay FOLDER``: select the allocation on recorded calls, honestly."""

from __future__ import annotations

import argparse

from scale.cli.options import UsageError
from scale.cli.support import (
    check_writable,
    lambda_of,
    load_examples,
    require_scale,
    spec_from_args,
    tracked_run,
)


def add_replay_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "compile from recorded calls (--replay)",
        "Search problem-level allocation recipes (estimator incl. `calibrated`, gate, System 2 "
        "stop rule) on recorded calls: seconds, no model time. Every --n problem is a dev "
        "problem; candidates are scored by K-fold cross-validation, the selection is "
        "estimated by nested cross-validation, and the incumbent is kept unless the "
        "selection's paired advantage is surely above 0.",
    )
    g.add_argument(
        "--replay",
        metavar="FOLDER",
        help="a folder of recorded calls: cot.jsonl (CoT's greedy replies with logprobs) and "
        "vote.jsonl (sampled chains), e.g. bench/results/round2-gsm8k-server/chains-8",
    )
    g.add_argument(
        "--programs",
        metavar="FILE",
        help="recorded greedy programs (a pot.jsonl), for the calibrated estimator's "
        "program features",
    )
    g.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    g.add_argument(
        "--incumbent",
        metavar="PROGRAM",
        help="the program to beat (default: the one the model options build, i.e. the "
        "default preset)",
    )
    g.add_argument("--force", action="store_true", help="write the selection even where it loses")


def _objective(args: argparse.Namespace):
    from scale.optimizers.selection import Objective

    if args.token_budget is not None:
        return Objective("budget", budget_tokens=float(args.token_budget))
    if args.objective == "cost-aware":
        return Objective("cost-aware", points_per_1k=lambda_of(args) * 100_000)
    return Objective("accuracy")


def run_replay_compile(args: argparse.Namespace) -> int:
    from scale.harness.results import ResultsFileError
    from scale.optimizers.recipes import apply_recipe, load_recorded, recipe_of
    from scale.optimizers.selection import compile_recorded
    from scale.programs import save_program
    from scale.tracking import log_program

    if not 2 <= args.folds <= 20:
        raise UsageError("--folds must be in 2..20")
    check_writable(args.out)
    objective = _objective(args)
    examples = load_examples(args)
    golds = {str(e.id): str(e.answer) for e in examples}
    try:
        problems, max_tokens = load_recorded(args.replay, golds, args.programs)
    except ResultsFileError as exc:
        raise UsageError(str(exc)) from None
    spec = spec_from_args(args)
    program = spec.build()
    require_scale(program)
    incumbent_program = (
        spec_from_args(args, program=args.incumbent).build() if args.incumbent else program
    )
    try:
        incumbent = recipe_of(incumbent_program)
        compiled = compile_recorded(
            problems,
            incumbent,
            objective,
            max_tokens=max_tokens,
            folds=args.folds,
            seed=args.seed,
            force=args.force,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report = compiled.report
    with tracked_run(
        args, f"compile --replay {args.dataset}", spec, objective=report["objective"]
    ) as tracker:
        for number, row in enumerate(report["top"], 1):
            with tracker.child(f"candidate {number}: {row['label']}") as child:
                child.metrics({k: v for k, v in row.items() if k != "label"})
        tracker.metrics(
            {
                "nested_accuracy": report["nested"]["accuracy"],
                "nested_tokens_per_problem": report["nested"]["tokens_per_problem"],
                "advantage_points": report["advantage"]["points"],
                "replaced": float(compiled.replaced),
            }
        )
        apply_recipe(program, compiled.recipe)
        path = save_program(
            program,
            args.out,
            report=report,
            dataset=args.dataset,
            val_ids=[p.id for p in problems],
            recorded=str(args.replay),
        )
        tracker.artifact(path)
        model_uri = log_program(tracker, path, model=spec.model, registered_name=args.register)
    print(summary_text(report))
    print(f'saved {path}; run it with: scale solve --program {path} "PROBLEM"')
    if model_uri:
        print(f"logged as the MLflow model {model_uri}")
    return 0


def summary_text(report: dict) -> str:
    """The compile report as a few lines a user reads."""
    nested, kept, versus = report["nested"], report["incumbent"], report["advantage"]
    lines = [
        f"objective: {report['objective']}; {report['candidates']} candidates, "
        f"{report['folds']}-fold cross-validation on {report['problems']} problems",
        f"selected: {report['selected']}",
        f"  nested estimate: accuracy {nested['accuracy']:.2f} (95% CI {nested['ci95'][0]:.2f}-"
        f"{nested['ci95'][1]:.2f}), {nested['tokens_per_problem']:.0f} tokens/problem",
        f"incumbent: {kept['label']}: accuracy {kept['accuracy']:.2f}, "
        f"{kept['tokens_per_problem']:.0f} tokens/problem",
        f"  advantage {versus['points']:+.1f} points (95% CI {versus['ci95'][0]:+.1f} to "
        f"{versus['ci95'][1]:+.1f}), {versus['wins']}W/{versus['losses']}L, tokens "
        f"x{versus['token_ratio']}",
        f"wrote: {report['written']} ({report['why']})",
        "signals for System 1's failure (AUROC, Brier): "
        + ", ".join(f"{name} {s['auroc']}, {s['brier']}" for name, s in report["signals"].items()),
    ]
    return "\n".join(lines)
