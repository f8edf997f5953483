"""``scale solve``: one problem, its steps shown as they complete."""

from __future__ import annotations

import argparse
import json
import os

from scale.cli.options import add_model_options, add_program_options
from scale.cli.support import printable, say, spec_from_args

EXAMPLE = "A shop sells pens at 3 dollars each. How much do 4 pens cost?"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve",
        help="solve one problem and show its steps",
        description="Solve one problem; steps are shown on stderr as they complete, the "
        "answer on stdout.",
    )
    p.add_argument(
        "problem", nargs="?", default=EXAMPLE, help="the problem text (default: a sample problem)"
    )
    add_model_options(p)
    add_program_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    g = p.add_argument_group("tracking")
    g.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow store: the solve is traced there as a run (default: $MLFLOW_TRACKING_URI; "
        "none: not tracked); also where --program models:/NAME/VERSION is found",
    )
    g.add_argument("--experiment", default="scale", help="MLflow experiment (default: scale)")
    g.add_argument("--no-trace", action="store_true", help="do not trace the solve")
    p.set_defaults(run=run)


def _step_line(index: int, step) -> str:
    difficulty = "  -  " if step.difficulty is None else f"{step.difficulty:.2f}"
    answer = printable(step.answer)
    answer = answer if len(answer) <= 40 else answer[:37] + "..."
    return (
        f"  {index + 1:>2}  {difficulty:>5}  S{step.system}  {answer:<40}  "
        f"{step.prompt_tokens + step.completion_tokens:>6}  {printable(step.subproblem)[:60]}"
    )


def live_printer():
    """A progress callback that prints each stage for a person."""
    from scale.programs import ProgressCallback

    class Printer(ProgressCallback):
        def on_gated(self, rating, decision: str) -> None:
            shown = "?" if rating.difficulty is None else f"{rating.difficulty:.2f}"
            say(f"problem rated {shown}: {decision.replace('system', 'System ')}")
            for note in rating.notes:  # e.g. the calibrated estimator's deciding features
                say(f"  why: {printable(note)}")

        def on_decomposed(self, subproblems, notes) -> None:
            say(f"decomposed into {len(subproblems)} steps")
            for note in notes:
                say(f"  note: {printable(note)}")
            say("   #  diff.  sys answer                                    tokens  sub-problem")

        def on_rated(self, difficulties) -> None:
            say(
                "difficulties: " + ", ".join("?" if d is None else f"{d:.2f}" for d in difficulties)
            )

        def on_step(self, index, step) -> None:
            say(_step_line(index, step))

    return Printer()


def run(args: argparse.Namespace) -> int:
    from scale import tracking
    from scale.programs import clean_problem, reporting_to

    problem, notes = clean_problem(args.problem)  # an unusable problem fails before setup
    for note in notes:
        say(f"note: {note}")
    spec = spec_from_args(args)
    if args.tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(args.tracking_uri)
    try:
        program = spec.build()
        say(
            f"solving with {program.method} on {spec.system_models[0]} (first use of a local "
            "model loads it; each step takes a while on a CPU)"
        )
        with (
            tracking.run(
                "solve",
                enabled=bool(args.tracking_uri) and not args.no_trace,
                tracking_uri=args.tracking_uri,
                experiment=args.experiment,
                params=spec.params(),
            ),
            reporting_to(live_printer()),
        ):
            pred = program(problem=problem)
    except Exception as exc:
        if args.json:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "method": spec.method}))
        raise
    if args.json:
        print(
            json.dumps(
                {
                    "answer": pred.answer,
                    "method": program.method,
                    "steps": [s.to_dict() for s in pred.steps],
                    "usage": pred.usage.to_dict(),
                    "notes": notes + list(pred.notes),
                }
            )
        )
        return 0
    usage = pred.usage
    print(f"answer: {printable(pred.answer)}")
    print(
        f"tokens: {usage.total_tokens} ({usage.prompt_tokens} prompt + "
        f"{usage.completion_tokens} completion) in {usage.lm_calls} LM calls, "
        f"{usage.seconds:.1f}s"
    )
    return 0 if pred.answer else 1
