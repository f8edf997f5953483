"""The ``scale`` command: thin argument parsing over the public API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from scale.tracking import Tracker

EXAMPLE = "A shop sells pens at 3 dollars each. How much do 4 pens cost?"


class UsageError(Exception):
    """A bad option value: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1]")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _model_options(p: argparse.ArgumentParser) -> None:
    from scale.lm import DEFAULT_MODEL

    g = p.add_argument_group("models")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="any litellm model string (openai/gpt-4o-mini, ollama_chat/qwen3, ...) "
        "or local/NAME, local/PATH.gguf, local/hf:REPO/FILE.gguf "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--api-base",
        help="URL of an OpenAI-compatible server (vLLM, llama.cpp "
        "server, Ollama); default: the provider's own",
    )
    g.add_argument(
        "--api-key",
        help="API key for --api-base or the provider "
        "(default: the provider's environment variable)",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds one LM call may take before it fails and is retried (default: %(default)s)",
    )
    g.add_argument(
        "--retries",
        type=int,
        default=3,
        choices=range(11),
        metavar="N",
        help="retries of a failed LM call (0-10), with exponential backoff that honours "
        "Retry-After (default: %(default)s)",
    )
    g.add_argument(
        "--system1-model", help="model for System 1, decomposition and scoring (default: --model)"
    )
    g.add_argument("--system2-model", help="model for System 2 (default: --model)")
    g.add_argument(
        "--system1-max-tokens", type=_positive, help="System 1 token budget per call (default: 256)"
    )
    g.add_argument(
        "--system2-max-tokens",
        type=_positive,
        help="System 2 token budget per call (default: 1024)",
    )
    g.add_argument(
        "--system2-samples",
        type=_positive,
        help="System 2 self-consistency samples per step (default: 1)",
    )


def _program_options(p: argparse.ArgumentParser) -> None:
    from scale.programs import METHODS, PRESETS
    from scale.programs.route import MODES, ROUTING_ESTIMATORS

    g = p.add_argument_group("method")
    g.add_argument(
        "--method",
        choices=METHODS,
        default="scale",
        help="scale, or a baseline: cot (one chain of thought), vote (majority of "
        "--vote-samples chains), uniform-s1/uniform-s2 (SCALE with every step "
        "on one system) (default: %(default)s)",
    )
    g.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="efficient",
        help="; ".join(f"{k}: {v.description}" for k, v in PRESETS.items())
        + " (default: %(default)s)",
    )
    g.add_argument(
        "--program",
        metavar="TUNED.json",
        help="load a program saved by `scale compile` (its method, prompts and "
        "routing; the options below still override the routing)",
    )
    g.add_argument(
        "--estimator",
        choices=ROUTING_ESTIMATORS,
        help="difficulty estimator; none: no rating calls, every step counts as hardest "
        "(default: the preset's)",
    )
    g.add_argument(
        "--route",
        choices=MODES,
        help="threshold: System 2 above --threshold; "
        "budget: the hardest --budget fraction of steps (default: threshold)",
    )
    g.add_argument(
        "--threshold",
        type=_fraction,
        help="step difficulty above which System 2 is used (default: the preset's)",
    )
    g.add_argument(
        "--budget",
        type=_fraction,
        help="fraction of steps sent to System 2 with --route budget (default: 0.5)",
    )
    g.add_argument(
        "--decompose-threshold",
        type=_fraction,
        help="decompose only problems rated above this; 1 = never (plain CoT) "
        "(default: the preset's)",
    )
    g.add_argument(
        "--vote-samples",
        type=_positive,
        default=5,
        help="chains for --method vote (default: %(default)s)",
    )


_MODEL_OPTIONS = (
    "model",
    "system1_model",
    "system2_model",
    "system1_max_tokens",
    "system2_max_tokens",
    "system2_samples",
    "vote_samples",
    "api_base",
    "api_key",
    "timeout",
    "retries",
)


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The model options, as ``build_program`` keywords."""
    return {name: getattr(args, name) for name in _MODEL_OPTIONS}


def program_from_args(args: argparse.Namespace):
    """Build the method the options describe."""
    from scale.programs import build_program

    return build_program(
        args.method,
        preset=args.preset,
        **_model_kwargs(args),
        program_path=args.program,
        estimator=args.estimator,
        mode=args.route,
        threshold=args.threshold,
        budget=args.budget,
        decompose_threshold=args.decompose_threshold,
    )


def _print(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


def _step_line(index: int, step: Any) -> str:
    difficulty = "  -  " if step.difficulty is None else f"{step.difficulty:.2f}"
    answer = step.answer if len(step.answer) <= 40 else step.answer[:37] + "..."
    return (
        f"  {index + 1:>2}  {difficulty:>5}  S{step.system}  {answer:<40}  "
        f"{step.prompt_tokens + step.completion_tokens:>6}  {step.subproblem[:60]}"
    )


def _live(event: str, data: dict[str, Any]) -> None:
    if event == "decomposed":
        _print(f"decomposed into {len(data['subproblems'])} steps")
        for note in data["notes"]:
            _print(f"  note: {note}")
        _print("   #  diff.  sys answer                                    tokens  sub-problem")
    elif event == "rated":
        shown = ", ".join("?" if d is None else f"{d:.2f}" for d in data["difficulties"])
        _print(f"difficulties: {shown}")
    elif event == "step":
        _print(_step_line(data["index"], data["step"]))


def cmd_solve(args: argparse.Namespace) -> int:
    from scale.programs import clean_problem, listening

    clean_problem(args.problem)  # an unusable problem fails here, before any setup
    program = program_from_args(args)
    _print(
        f"solving with {args.method} on {args.system1_model or args.model} "
        "(first use of a local model loads it; each step takes a while on a CPU)"
    )
    with listening(_live):
        pred = program(problem=args.problem)
    steps = [
        {
            "subproblem": s.subproblem,
            "difficulty": s.difficulty,
            "system": s.system,
            "answer": s.answer,
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "lm_calls": s.lm_calls,
            "seconds": s.seconds,
            "notes": s.notes,
        }
        for s in pred.steps
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "answer": pred.answer,
                    "method": args.method,
                    "steps": steps,
                    "usage": pred.usage,
                    "notes": pred.notes,
                }
            )
        )
    else:
        usage = pred.usage
        print(f"answer: {pred.answer}")
        print(
            f"tokens: {usage['total_tokens']} ({usage['prompt_tokens']} prompt + "
            f"{usage['completion_tokens']} completion) in {usage['lm_calls']} LM calls, "
            f"{usage['seconds']:.1f}s"
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from scale.local import PACKAGED_MODELS, packaged_status

    rows = [packaged_status(m) for m in PACKAGED_MODELS.values()]
    if args.json:
        print(json.dumps(rows))
        return 0
    for row in rows:
        state = (
            "ready"
            if row["ready"]
            else "installed (assembled on first use)"
            if row["installed"]
            else f"not installed: {row['install']}"
        )
        print(f"{row['name']:<28} {row['size'] / 1e6:>8.1f} MB  {state}")
        print(f"    {row['description']}")
        if row["path"]:
            print(f"    {row['path']}")
    print("Also accepted: local/PATH.gguf, local/hf:REPO/FILE.gguf, and any litellm model string.")
    return 0


def _csv_floats(text: str) -> list[float | None]:
    values: list[float | None] = []
    for part in text.split(","):
        part = part.strip()
        values.append(None if part.lower() == "none" else _fraction(part))
    if not values:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return values


def _estimators_option(p: argparse.ArgumentParser, purpose: str, known: Sequence[str]) -> None:
    def estimator_list(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        if not names or any(n not in known for n in names):
            raise argparse.ArgumentTypeError(
                f"estimators must be some of {', '.join(known)}, got {text!r}"
            )
        return names

    p.add_argument(
        "--estimators",
        type=estimator_list,
        default=list(known),
        help=f"{purpose} (default: {','.join(known)})",
    )


def _data_options(p: argparse.ArgumentParser, *, n_default: int | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        required=True,
        help="gsm8k, math500, aime24, aime25, amc23, or a .jsonl/.csv file with "
        "problem and answer columns",
    )
    g.add_argument(
        "--n",
        type=_positive,
        default=n_default,
        help="number of examples, sampled deterministically with --seed "
        "(default: %(default)s; None = all)",
    )
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    g.add_argument("--level", help="MATH level filter: 2, 1-3 or 1,2,3 (default: all)")
    g.add_argument("--subject", help="MATH subject filter, e.g. Algebra (default: all)")
    g.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first malformed row instead of reporting and skipping it",
    )
    g.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FILE",
        help="leave out the examples whose ids this file lists (a results .jsonl, a bench "
        "report.json or a dataset), e.g. to tune on examples disjoint from a benchmark; "
        "repeatable",
    )
    g.add_argument(
        "--problem-field",
        default="problem",
        help="problem column of a user file (default: %(default)s)",
    )
    g.add_argument(
        "--answer-field",
        default="answer",
        help="answer column of a user file (default: %(default)s)",
    )
    g.add_argument(
        "--id-field",
        default="id",
        help="id column of a user file (default: %(default)s; missing ids become FILE-LINE)",
    )


def _retry_errors_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="when resuming, run again the examples recorded with an error (a model timeout, "
        "a dead server); the new row is appended and supersedes the error row",
    )


def _tracking_options(p: argparse.ArgumentParser) -> None:
    from scale.tracking import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI

    g = p.add_argument_group("tracking")
    g.add_argument(
        "--tracking-uri",
        default=None,
        help=f"MLflow tracking store (default: $MLFLOW_TRACKING_URI or {DEFAULT_TRACKING_URI})",
    )
    g.add_argument(
        "--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment (default: %(default)s)"
    )
    g.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")


def load_examples(args: argparse.Namespace, n: int | None = None) -> list:
    """The examples the data options select (``n`` overrides ``--n``)."""
    from scale.datasets import load_dataset, read_ids

    filters: dict[str, Any] = {}
    if args.level:
        filters["level"] = (
            args.level
            if "-" in args.level
            else [int(v) for v in args.level.split(",") if v.strip()]
        )
    if args.subject:
        filters["subject"] = args.subject
    return load_dataset(
        args.dataset,
        n=n or args.n,
        seed=args.seed,
        strict=args.strict,
        problem_field=args.problem_field,
        answer_field=args.answer_field,
        id_field=args.id_field,
        on_issue=lambda i: _print(f"skipped {i}"),
        exclude_ids=set().union(*(read_ids(path) for path in args.exclude)),
        **filters,
    )


def run_params(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """What a tracked run records as its parameters."""
    keys = (
        "method",
        "preset",
        "model",
        "system1_model",
        "system2_model",
        "estimator",
        "route",
        "threshold",
        "budget",
        "decompose_threshold",
        "program",
        "dataset",
        "n",
        "seed",
        "level",
        "subject",
        "threads",
        "system1_max_tokens",
        "system2_max_tokens",
        "system2_samples",
    )
    return {k: getattr(args, k, None) for k in keys} | extra


def tracked_run(
    args: argparse.Namespace, name: str, **extra: Any
) -> AbstractContextManager[Tracker]:
    """The MLflow run a command logs to, as its tracking options ask, with ``run_params``."""
    from scale import tracking

    return tracking.run(
        name,
        enabled=not args.no_mlflow,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        params=run_params(args, **extra),
    )


def _summary_lines(summary: Any) -> list[str]:
    d = summary.to_dict()
    lines = [
        f"accuracy {d['accuracy']:.3f} (95% CI {d['ci95'][0]:.3f}-{d['ci95'][1]:.3f}), "
        f"n={d['n']}, correct={d['correct']}, errors={d['errors']}",
        f"tokens/problem {d['tokens_per_problem']:.0f} "
        f"({d['generated_tokens_per_problem']:.0f} generated); LM calls/problem "
        f"{d['lm_calls_per_problem']:.1f}; System 2 share of steps {d['system2_fraction']:.2f}",
    ]
    if d["tokens_by_stage"]:
        lines.append(
            "tokens/problem by stage: "
            + ", ".join(f"{k} {v:.0f}" for k, v in d["tokens_by_stage"].items())
        )
    if d["tokens_by_system"]:
        lines.append(
            "tokens/problem by system: "
            + ", ".join(f"S{k} {v:.0f}" for k, v in d["tokens_by_system"].items())
        )
    share = d["lm_seconds_share"]
    lines.append(
        f"wall time {d['wall_s']:.1f}s; share of time inside model calls "
        + ("- (every call from the cache)" if share is None else f"{share:.3f}")
    )
    return lines


def cmd_eval(args: argparse.Namespace) -> int:
    import tempfile

    from scale.optimizers import evaluate

    examples = load_examples(args)
    program = program_from_args(args)
    out = args.out or str(Path(tempfile.mkdtemp(prefix="scale-eval-")) / "results.jsonl")
    with tracked_run(args, f"eval {args.method} {args.dataset}") as tracker:
        _, summary = evaluate(
            program,
            examples,
            threads=args.threads,
            out=out,
            resume=args.resume,
            retry_errors=args.retry_errors,
            progress=not args.quiet,
            desc=f"{args.method} {args.dataset}",
        )
        tracker.metrics(summary.to_dict())
        tracker.artifact(out)
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print("\n".join(_summary_lines(summary)))
        print(f"results: {out}")
    return 0


def _objective(args: argparse.Namespace):
    from scale.optimizers import CostAware

    if args.objective == "accuracy":
        if args.token_budget:
            return CostAware(budget=args.token_budget)
        return CostAware()
    return CostAware(lam=args.lam, budget=args.token_budget)


def _search_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("routing search")
    g.add_argument(
        "--thresholds",
        type=_csv_floats,
        default=[round(0.1 * i, 1) for i in range(11)],
        help="step thresholds to try, comma-separated (default: 0,0.1,...,1)",
    )
    g.add_argument(
        "--decompose-thresholds",
        type=_csv_floats,
        default=None,
        help="decomposition gates to try, comma-separated; 'none' = always decompose, "
        "1 = never (default: the program's own gate only)",
    )
    g.add_argument(
        "--objective",
        choices=("accuracy", "cost-aware"),
        default="accuracy",
        help="what the best trial maximizes: accuracy, or accuracy - lambda * "
        "tokens per problem (default: %(default)s; ties go to fewer tokens)",
    )
    g.add_argument(
        "--lambda",
        dest="lam",
        type=float,
        default=1e-4,
        help="cost weight per token for --objective cost-aware (default: %(default)s)",
    )
    g.add_argument(
        "--token-budget",
        type=_positive,
        help="only trials within this many tokens per problem count",
    )
    g.add_argument(
        "--threads",
        type=_positive,
        default=1,
        help="examples evaluated in parallel (default: %(default)s)",
    )


def _gates(args: argparse.Namespace, program: Any) -> list[float | None]:
    """The decomposition gates to search: as given, else the program's own."""
    if args.decompose_thresholds is not None:
        return args.decompose_thresholds
    return [program.routing.decompose_threshold]


def _trial_table(trials: list) -> str:
    lines = [
        "estimator    gate  mode       value  accuracy  tokens/problem  S2 share  spent tokens"
    ]
    for t in trials:
        gate = "-" if t.decompose_threshold is None else f"{t.decompose_threshold:g}"
        if t.failure:
            lines.append(
                f"{t.estimator:<12} {gate:>4}  {t.mode:<9} {t.value:>6.2f}  failed: {t.failure}"
            )
            continue
        lines.append(
            f"{t.estimator:<12} {gate:>4}  {t.mode:<9} {t.value:>6.2f}  "
            f"{t.accuracy:>8.3f}  {t.tokens_per_problem:>14.0f}  "
            f"{t.system2_fraction:>8.2f}  {t.spent_tokens:>12}"
        )
    return "\n".join(lines)


def _require_scale(program: Any) -> None:
    from scale.programs import SCALE

    if not isinstance(program, SCALE):
        raise UsageError(
            "routing search needs a SCALE program: --method scale, uniform-s1 or uniform-s2"
        )


def cmd_sweep(args: argparse.Namespace) -> int:
    from scale.optimizers import pareto_front, search_routing
    from scale.plots import tradeoff_plot
    from scale.programs.io import atomic_write_text

    examples = load_examples(args)
    program = program_from_args(args)
    _require_scale(program)
    out_dir = Path(args.out_dir)
    with tracked_run(args, f"sweep {args.dataset}") as tracker:
        trials = search_routing(
            program,
            examples,
            estimators=[program.routing.estimator],
            decompose_thresholds=_gates(args, program),
            thresholds=args.thresholds,
            mode=program.routing.mode,
            objective=_objective(args),
            threads=args.threads,
            tracker=tracker,
            progress=not args.quiet,
        )
        front = pareto_front(trials)
        table = _trial_table(trials)
        atomic_write_text(
            out_dir / "sweep.json",
            json.dumps(
                {"trials": [t.to_dict() for t in trials], "pareto": [t.to_dict() for t in front]},
                indent=2,
            ),
        )
        atomic_write_text(out_dir / "sweep.txt", table + "\n")
        points = [{"label": f"{t.value:g}", **t.to_dict()} for t in trials if not t.failure]
        plot = tradeoff_plot(
            points,
            out_dir / "sweep.png",
            front=[t.to_dict() for t in front],
            title=f"{program.routing.estimator} threshold sweep on "
            f"{args.dataset} (n={len(examples)})",
        )
        for name in ("sweep.json", "sweep.txt"):
            tracker.artifact(out_dir / name)
        tracker.artifact(plot)
    print(table)
    print(f"wrote {out_dir / 'sweep.json'}, {out_dir / 'sweep.txt'} and {plot}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from scale.optimizers import SCALEOptimizer
    from scale.programs import save_program

    examples = load_examples(args, n=args.train + args.val)
    if len(examples) < args.train + args.val:
        raise UsageError(
            f"{args.dataset} has only {len(examples)} examples for "
            f"--train {args.train} + --val {args.val}"
        )
    trainset, valset = examples[: args.train], examples[args.train :]
    program = program_from_args(args)
    _require_scale(program)
    with tracked_run(
        args,
        f"compile {args.optimizer} {args.dataset}",
        optimizer=args.optimizer,
        train=args.train,
        val=args.val,
        objective=args.objective,
        estimators=",".join(args.estimators),
        tune_scorer=args.tune_scorer,
    ) as tracker:
        optimizer = SCALEOptimizer(
            prompt_optimizer=args.optimizer,
            objective=_objective(args),
            estimators=args.estimators,
            decompose_thresholds=_gates(args, program),
            thresholds=args.thresholds,
            mode=program.routing.mode,
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
    print(_trial_table(optimizer.trials))
    print(f"best: {json.dumps(optimizer.trials and best)}")
    print(f'saved {path}; run it with: scale solve --program {path} "PROBLEM"')
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from scale.bench import BENCH_METHODS, run_bench
    from scale.programs import build_program

    unknown = [m for m in args.methods if m not in BENCH_METHODS]
    if unknown:
        raise UsageError(f"unknown methods {unknown}: choose from {', '.join(BENCH_METHODS)}")
    if args.program and "tuned" not in args.methods:
        args.methods = [*args.methods, "tuned"]
    if "tuned" in args.methods and not args.program:
        raise UsageError("method 'tuned' needs --program TUNED.json")
    build_program(
        model=args.model, system1_model=args.system1_model, system2_model=args.system2_model
    )  # refuses unknown models before any work
    examples = load_examples(args)
    if args.program:
        _refuse_overlap(args.program, examples)

    def build(name: str):
        return build_program(
            **BENCH_METHODS[name],
            **_model_kwargs(args),
            program_path=args.program if name == "tuned" else None,
        )

    with tracked_run(args, f"bench {args.dataset}", methods=",".join(args.methods)) as tracker:
        report = run_bench(
            examples,
            args.methods,
            build,
            args.out,
            dataset=args.dataset,
            models=_models(args),
            checksums=_checksums(args),
            round_size=args.round_size,
            threads=args.threads,
            retry_errors=args.retry_errors,
            tracker=tracker,
            progress=not args.quiet,
        )
    print((Path(args.out) / "report.md").read_text())
    return 0 if report else 1


def _refuse_overlap(program_path: str, examples: list) -> None:
    """Refuse to measure a tuned program on examples it was compiled on."""
    from scale.programs.io import read_program

    header = read_program(program_path)["scale"]
    seen = set(header.get("train_ids") or []) | set(header.get("val_ids") or [])
    shared = sorted(seen & {e.id for e in examples})
    if shared:
        raise UsageError(
            f"{program_path} was compiled on {len(shared)} of these examples "
            f"({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''}); compile it with "
            "--exclude RESULTS.jsonl, or benchmark other examples (--seed)"
        )


def _system_models(args: argparse.Namespace) -> tuple[str, str]:
    """System 1's and System 2's model (each defaults to ``--model``)."""
    return args.system1_model or args.model, args.system2_model or args.model


def _models(args: argparse.Namespace) -> str:
    """The model(s) of a run, as reports name them."""
    if not (args.system1_model or args.system2_model):
        return args.model
    system1, system2 = _system_models(args)
    return f"System 1 {system1}, System 2 {system2}"


def _checksums(args: argparse.Namespace) -> dict[str, str | None]:
    """sha256 of each model's weights, when known (local models)."""
    from scale.local import model_sha256

    return {m: model_sha256(m) for m in dict.fromkeys([args.model, *_system_models(args)])}


def cmd_estimators(args: argparse.Namespace) -> int:
    from scale.bench import estimator_report

    examples = load_examples(args)
    if args.program:
        _refuse_overlap(args.program, examples)
    program = program_from_args(args)
    _require_scale(program)
    with tracked_run(
        args, f"estimators {args.dataset}", estimators=",".join(args.estimators)
    ) as tracker:
        estimator_report(
            program,
            examples,
            args.out,
            estimators=args.estimators,
            thresholds=args.thresholds,
            models=_models(args),
            checksums=_checksums(args),
            tracker=tracker,
            progress=not args.quiet,
        )
    print((Path(args.out) / "estimators.md").read_text())
    return 0


def cmd_throughput(args: argparse.Namespace) -> int:
    from scale.bench import machine, throughput
    from scale.programs.io import atomic_write_text

    rows = throughput(args.threads, n=args.n, delay=args.delay, method=args.method)
    lines = [
        "| threads | problems/s | scaling vs 1 thread x threads | errors |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['threads']} | {r['problems_per_s']:.2f} | {r['scaling']:.2f} | {r['errors']} |"
        for r in rows
    ]
    table = "\n".join(lines)
    if args.out:
        atomic_write_text(
            Path(args.out) / "throughput.json",
            json.dumps(
                {"rows": rows, "delay_s": args.delay, "method": args.method, "machine": machine()},
                indent=2,
            ),
        )
        atomic_write_text(Path(args.out) / "throughput.md", table + "\n")
    print(table)
    return 0


def build_parser() -> Parser:
    from scale.programs.route import ESTIMATORS, ROUTING_ESTIMATORS

    parser = Parser(
        prog="scale",
        description="SCALE: selective resource allocation for math problems, as a DSPy "
        "program. Decompose a problem, rate each step's difficulty, send hard "
        "steps to a deliberate System 2 and easy ones to a fast System 1.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser(
        "solve",
        help="solve one problem and show its steps",
        description="Solve one problem; steps are shown as they complete.",
    )
    p.add_argument(
        "problem", nargs="?", default=EXAMPLE, help="the problem text (default: a sample problem)"
    )
    _model_options(p)
    _program_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=cmd_solve)

    p = sub.add_parser(
        "eval",
        help="evaluate a method on a dataset (resumable)",
        description="Evaluate a method on a dataset. Each example's result is "
        "appended to --out as it finishes; --resume continues.",
    )
    _data_options(p)
    _model_options(p)
    _program_options(p)
    p.add_argument(
        "--threads",
        type=_positive,
        default=1,
        help="examples solved in parallel (default: %(default)s)",
    )
    p.add_argument("--out", help="results JSONL (default: a temporary file)")
    p.add_argument(
        "--resume", action="store_true", help="skip ids already in --out and append the rest"
    )
    _retry_errors_option(p)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _tracking_options(p)
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser(
        "sweep",
        help="threshold sweep: accuracy vs tokens, table and plot",
        description="Evaluate the program at each threshold (sharing cached "
        "decomposition and difficulty calls) and plot accuracy "
        "against tokens per problem.",
    )
    _data_options(p, n_default=20)
    _model_options(p)
    _program_options(p)
    _search_options(p)
    p.add_argument(
        "--out-dir", default="sweep", help="where sweep.json/.txt/.png go (default: %(default)s)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _tracking_options(p)
    p.set_defaults(run=cmd_sweep)

    p = sub.add_parser(
        "compile",
        help="tune prompts and routing on a dev split, save JSON",
        description="Compile SCALE on a dev set: optimize stage prompts, then "
        "search estimator, decomposition gate and threshold on a "
        "disjoint validation split; save the tuned program.",
    )
    _data_options(p)
    p.add_argument(
        "--train", type=_positive, default=8, help="training examples (default: %(default)s)"
    )
    p.add_argument(
        "--val",
        type=_positive,
        default=8,
        help="validation examples, disjoint from training (default: %(default)s)",
    )
    p.add_argument(
        "--optimizer",
        choices=("none", "bootstrap", "mipro", "gepa"),
        default="bootstrap",
        help="prompt optimizer (default: %(default)s)",
    )
    _estimators_option(
        p,
        "difficulty estimators to try; none = no rating: every step on System 2, or on "
        "System 1 at threshold 1",
        ROUTING_ESTIMATORS,
    )
    p.add_argument(
        "--tune-scorer",
        action="store_true",
        help="give the difficulty scorer outcome-labelled demos and report its AUROC before/after",
    )
    p.add_argument("--out", required=True, help="where the tuned program JSON goes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _model_options(p)
    _program_options(p)
    _search_options(p)
    _tracking_options(p)
    p.set_defaults(run=cmd_compile)

    p = sub.add_parser(
        "bench",
        help="all methods on the same examples: accuracy and cost",
        description="Run each method on the same examples with the same model(s), in rounds "
        "of --round-size problems. Results per method are resumable JSONL files in --out; "
        "report.md, report.json and tradeoff.png are rewritten after every round for the "
        "problems every method has done.",
    )
    _data_options(p, n_default=20)
    _model_options(p)
    p.add_argument(
        "--methods",
        type=lambda t: [v.strip() for v in t.split(",") if v.strip()],
        default=["cot", "vote", "scale-paper", "scale", "uniform-s1", "uniform-s2"],
        help="comma-separated, from: cot, vote, scale-paper (the paper preset), scale (the "
        "efficient preset), uniform-s1, uniform-s2, tuned (the --program) (default: "
        "cot,vote,scale-paper,scale,uniform-s1,uniform-s2, plus tuned with --program)",
    )
    p.add_argument(
        "--program",
        metavar="TUNED.json",
        help="a program saved by `scale compile`, benchmarked as method 'tuned'; refused if "
        "it was compiled on any of the benchmark's examples",
    )
    p.add_argument(
        "--vote-samples", type=_positive, default=5, help="chains for vote (default: %(default)s)"
    )
    p.add_argument(
        "--threads", type=_positive, default=1, help="examples in parallel (default: %(default)s)"
    )
    p.add_argument(
        "--round-size",
        type=_positive,
        default=5,
        metavar="N",
        help="problems per round: each round runs every method on the next N problems, then "
        "rewrites the report for all problems done so far, so a run stopped after hours still "
        "has a paired report (default: %(default)s)",
    )
    p.add_argument("--out", required=True, help="results folder, e.g. bench/results/NAME")
    _retry_errors_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _tracking_options(p)
    p.set_defaults(run=cmd_bench)

    p = sub.add_parser(
        "estimators",
        help="compare difficulty estimators on the same steps",
        description="For each step of each problem: System 2's answer as the "
        "reference, System 1's greedy answer (the step is hard when they differ), and every "
        "estimator's score; reports each estimator's AUROC for hard steps, its score "
        "distribution, and the accuracy and tokens of routing with it at each threshold.",
    )
    _data_options(p, n_default=10)
    _model_options(p)
    _program_options(p)
    _estimators_option(p, "estimators to compare", ESTIMATORS)
    p.add_argument(
        "--thresholds",
        type=_csv_floats,
        default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        help="thresholds searched per estimator (default: 0,0.2,...,1)",
    )
    p.add_argument("--out", required=True, help="folder for estimators.json/.md")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _tracking_options(p)
    p.set_defaults(run=cmd_estimators)

    p = sub.add_parser(
        "throughput",
        help="concurrency: problems/s at several thread counts",
        description="Runs a method against a local fake OpenAI-compatible "
        "server that answers after a fixed delay, so only the "
        "framework's own concurrency is measured.",
    )
    p.add_argument(
        "--threads",
        type=lambda t: [_positive(v) for v in t.split(",")],
        default=[1, 2, 4, 8],
        help="thread counts (default: 1,2,4,8)",
    )
    p.add_argument("--n", type=_positive, default=16, help="problems (default: %(default)s)")
    p.add_argument(
        "--delay",
        type=float,
        default=0.5,
        help="seconds the server takes per call (default: %(default)s)",
    )
    p.add_argument("--method", default="cot", help="method to run (default: %(default)s)")
    p.add_argument("--out", help="folder for throughput.json/.md")
    p.set_defaults(run=cmd_throughput)

    p = sub.add_parser(
        "models",
        help="list the packaged local models",
        description="List the local models: installed or not, size, path.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_models)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    from scale.datasets import DatasetError
    from scale.local import ModelError
    from scale.optimizers.evaluate import ResultsFileError
    from scale.programs import ProblemError, ProgramFileError, RoutingError

    return (
        UsageError,
        DatasetError,
        ModelError,
        ProblemError,
        ProgramFileError,
        RoutingError,
        ResultsFileError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scale`` console script."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        _print("interrupted")
        return 130
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            _print(f"scale: error: {exc}")
            return 2
        if os.environ.get("SCALE_DEBUG"):
            raise
        _print(
            f"scale: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            " (set SCALE_DEBUG=1 for the traceback)"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
