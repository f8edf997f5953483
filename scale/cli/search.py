"""``scale sweep`` and ``scale compile``: routing search, and the full optimizer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scale.cli.compile_replay import add_replay_options, run_replay_compile
from scale.cli.options import (
    UsageError,
    add_data_options,
    add_model_options,
    add_program_options,
    add_search_options,
    add_threads_option,
    add_tracking_options,
)
from scale.cli.support import (
    check_writable,
    load_examples,
    objective,
    require_scale,
    spec_from_args,
    tracked_run,
)


def register(sub: argparse._SubParsersAction) -> None:
    from scale.optimizers import PROMPT_OPTIMIZERS

    p = sub.add_parser(
        "sweep",
        help="threshold sweep: accuracy vs tokens, table and plot",
        description="Evaluate the program at each threshold (and gate), sharing cached calls "
        "across trials, and plot accuracy against tokens per problem.",
    )
    add_data_options(p, n_default=20)
    add_model_options(p)
    add_program_options(p)
    add_search_options(p)
    add_threads_option(p)
    p.add_argument("--out-dir", default="sweep", help="where sweep.json/.txt/.png go")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_tracking_options(p)
    p.set_defaults(run=run_sweep)

    p = sub.add_parser(
        "compile",
        help="tune prompts, routing and System 2 on a dev split, save JSON",
        description="Compile SCALE on a dev set: optimize the stage prompts, then search "
        "estimator x gate x decompose x threshold x System 2 settings on a disjoint "
        "validation split; save the tuned program (prompts, routing, knobs, trial table).",
    )
    add_data_options(p)
    p.add_argument("--train", type=int, default=8, help="training examples (default: 8)")
    p.add_argument(
        "--val",
        type=int,
        default=30,
        help="validation examples, disjoint from training (default: %(default)s; fewer "
        "rarely separate the trials)",
    )
    p.add_argument(
        "--optimizer",
        choices=PROMPT_OPTIMIZERS,
        default="bootstrap",
        help="prompt optimizer (default: %(default)s)",
    )
    p.add_argument(
        "--estimators",
        default="none,agreement,check,agreement+check",
        help="estimators to try, comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--decompose-options",
        default="true,false",
        help="for problems above the gate: true = decompose, false = System 2 answers "
        "whole; comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--system2-options",
        default="",
        metavar="SPEC;SPEC",
        help="System 2 settings to try, ';'-separated, each 'samples=N,stop=KIND,"
        "confidence=C,window=W,greedy_first=true|false' (default: the program's own)",
    )
    p.add_argument(
        "--tune-scorer",
        action="store_true",
        help="give the stated-difficulty scorer outcome-labelled demos (AUROC before/after)",
    )
    p.add_argument("--out", required=True, help="where the tuned program JSON goes")
    p.add_argument(
        "--register",
        metavar="NAME",
        help="register the logged MLflow model under NAME (load it with --program "
        "models:/NAME/VERSION, or mlflow.pyfunc.load_model)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_options(p)
    add_program_options(p)
    add_search_options(p)
    add_threads_option(p)
    add_tracking_options(p)
    add_replay_options(p)
    p.set_defaults(run=run_compile)


def _gates(args: argparse.Namespace, program) -> list[float | None]:
    return args.gates if args.gates is not None else [program.routing.gate]


def trial_table(trials: list) -> str:
    lines = [f"{'setting':<50} accuracy  tokens/problem  S2 share  spent tokens"]
    for t in trials:
        if t.failure:
            lines.append(f"{t.label():<50} failed: {t.failure}")
            continue
        lines.append(
            f"{t.label():<50} {t.accuracy:>8.3f}  {t.tokens_per_problem:>14.0f}  "
            f"{t.system2_fraction:>8.2f}  {t.spent_tokens:>12}"
        )
    return "\n".join(lines)


def run_sweep(args: argparse.Namespace) -> int:
    from scale.bench.plots import tradeoff_plot
    from scale.optimizers import Grid, pareto_front, search_routing
    from scale.programs.io import atomic_write_text

    check_writable(args.out_dir, folder=True)
    examples = load_examples(args)
    spec = spec_from_args(args)
    program = spec.build()
    require_scale(program)
    out_dir = Path(args.out_dir)
    grid = Grid(
        estimators=[program.routing.estimator],
        gates=_gates(args, program),
        decompose=[program.routing.decompose],
        thresholds=args.thresholds,
        mode=program.routing.mode,
    )
    with tracked_run(args, f"sweep {args.dataset}", spec) as tracker:
        trials = search_routing(
            program,
            examples,
            grid,
            objective=objective(args),
            threads=args.threads,
            tracker=tracker,
            progress=not args.quiet,
        )
        front = pareto_front(trials)
        table = trial_table(trials)
        atomic_write_text(
            out_dir / "sweep.json",
            json.dumps(
                {"trials": [t.to_dict() for t in trials], "pareto": [t.to_dict() for t in front]},
                indent=2,
            ),
        )
        atomic_write_text(out_dir / "sweep.txt", table + "\n")
        points = [{**t.to_dict(), "label": t.label()} for t in trials if not t.failure]
        plot = tradeoff_plot(
            points,
            out_dir / "sweep.png",
            front=[t.to_dict() for t in front],
            title=f"{program.routing.estimator} sweep on {args.dataset} (n={len(examples)})",
        )
        for path in (out_dir / "sweep.json", out_dir / "sweep.txt", plot):
            tracker.artifact(path)
    print(table)
    print(f"wrote {out_dir / 'sweep.json'}, {out_dir / 'sweep.txt'} and {plot}")
    return 0


def _system2_options(text: str) -> list[dict | None]:
    from scale.programs.stopping import STOP_KINDS

    if not text.strip():
        return [None]
    options: list[dict | None] = []
    for part in text.split(";"):
        knobs: dict = {}
        for item in filter(None, (i.strip() for i in part.split(","))):
            key, _, value = item.partition("=")
            key = key.strip()
            try:
                if key in ("samples", "window"):
                    knobs[key] = int(value)
                elif key == "greedy_first" and value in ("true", "false"):
                    knobs[key] = value == "true"
                elif key == "confidence":
                    knobs[key] = float(value)
                elif key == "stop" and value in STOP_KINDS:
                    knobs[key] = value
                else:
                    raise ValueError
            except ValueError:
                raise UsageError(
                    f"--system2-options: cannot read {item!r} (expected samples=N, stop="
                    f"{'|'.join(STOP_KINDS)}, confidence=C, window=W or greedy_first=true|false)"
                ) from None
        options.append(knobs or None)
    return options


def _bools(text: str) -> list[bool]:
    values = []
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        if part not in ("true", "false"):
            raise UsageError(f"--decompose-options takes true/false, got {part!r}")
        values.append(part == "true")
    return values or [True]


def run_compile(args: argparse.Namespace) -> int:
    from scale.optimizers import Grid, SCALEOptimizer
    from scale.programs import check_estimator, save_program
    from scale.tracking import log_program

    if args.replay:
        return run_replay_compile(args)
    if args.programs or args.incumbent or args.force:
        raise UsageError("--programs, --incumbent and --force go with --replay FOLDER")
    if args.train < 1 or args.val < 1:
        raise UsageError("--train and --val must be at least 1")
    check_writable(args.out)
    estimators = [e.strip() for e in args.estimators.split(",") if e.strip()]
    for name in estimators:
        try:
            check_estimator(name)
        except ValueError as exc:
            raise UsageError(f"--estimators: {exc}") from None
    examples = load_examples(args, n=args.train + args.val)
    if len(examples) < args.train + args.val:
        raise UsageError(
            f"{args.dataset} has only {len(examples)} examples for --train {args.train} + "
            f"--val {args.val}"
        )
    trainset, valset = examples[: args.train], examples[args.train :]
    spec = spec_from_args(args)
    program = spec.build()
    require_scale(program)
    grid = Grid(
        estimators=estimators,
        gates=_gates(args, program),
        decompose=_bools(args.decompose_options),
        thresholds=args.thresholds,
        mode=program.routing.mode,
        system2=_system2_options(args.system2_options),
    )
    with tracked_run(
        args,
        f"compile {args.optimizer} {args.dataset}",
        spec,
        optimizer=args.optimizer,
        train=args.train,
        val=args.val,
        objective=args.objective,
        estimators=",".join(estimators),
        tune_scorer=args.tune_scorer,
    ) as tracker:
        optimizer = SCALEOptimizer(
            prompt_optimizer=args.optimizer,
            objective=objective(args),
            grid=grid,
            tune_scorer=args.tune_scorer,
            threads=args.threads,
            tracker=tracker,
            progress=not args.quiet,
            seed=args.seed,
        )
        tuned = optimizer.compile(program, trainset=trainset, valset=valset)
        path = save_program(
            tuned,
            args.out,
            report=optimizer.report,
            trials=[t.to_dict() for t in optimizer.trials],
            pareto=[t.to_dict() for t in optimizer.pareto],
            dataset=args.dataset,
            train_ids=[e.id for e in trainset],
            val_ids=[e.id for e in valset],
        )
        best = optimizer.report["best"]
        tracker.metrics({"best_" + k: v for k, v in best.items() if isinstance(v, (int, float))})
        tracker.artifact(path)
        model_uri = log_program(tracker, path, model=spec.model, registered_name=args.register)
    print(trial_table(optimizer.trials))
    report = optimizer.report
    print(
        f"best: {best['label']} (accuracy {best['accuracy']:.3f}, {best['tokens_per_problem']:.0f} "
        f"tokens/problem); {report['ties']['tied']} trials tied with it, "
        f"{report['ties']['within_one_problem']} within one validation problem"
    )
    print(f'saved {path}; run it with: scale solve --program {path} "PROBLEM"')
    if model_uri:
        print(f"logged as the MLflow model {model_uri}")
    return 0
