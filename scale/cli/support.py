"""What the commands do with their parsed options: build the program, load the data, open
the MLflow run, and speak to the person running them."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scale.cli.options import UsageError

if TYPE_CHECKING:
    from scale.programs import ProgramSpec
    from scale.tracking import Tracker


def say(text: str = "") -> None:
    """A line for the person running the command (stderr; stdout carries results)."""
    print(text, file=sys.stderr, flush=True)


def printable(text: Any) -> str:
    """Model text made safe for a terminal: control characters (escape sequences among
    them) shown as ``\\xNN`` escapes; newlines and tabs kept."""
    return "".join(
        c if c in "\n\t" or (c.isprintable() and c != "\x7f") else repr(c)[1:-1] for c in str(text)
    )


def check_writable(path: str | Path, *, folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: a dangling link, a
    folder where a file goes (or a file where a folder goes), or no writable folder above
    it to create it in."""
    path = Path(path)
    what = "--out folder" if folder else "--out file"
    if path.is_symlink() and not path.exists():
        raise UsageError(f"{path}: a link to nothing; give the {what} itself")
    if path.exists() and path.is_dir() != folder:
        raise UsageError(f"{path} is {'a file' if folder else 'a folder'}: give a {what}")
    existing = path if folder and path.exists() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: cannot be written ({existing} is not a writable folder)")


def check_resume(args: argparse.Namespace, out_option: str = "out") -> None:
    if getattr(args, "resume", False) and not getattr(args, out_option, None):
        raise UsageError(f"--resume needs --{out_option.replace('_', '-')}: the file to continue")
    if getattr(args, "retry_errors", False) and not getattr(args, "resume", True):
        raise UsageError("--retry-errors works with --resume (it reruns the error rows of --out)")


def setup_process(args: argparse.Namespace) -> None:
    """The process-wide settings a command's options ask for, made once before it runs: the
    local runtime (``--runtime``; the recorded runtimes answer from ``$SCALE_RECORDINGS``),
    DSPy's cache (``--no-cache``) and the litellm pools (``--router``)."""
    from scale.harness import recorded
    from scale.models import local

    if getattr(args, "runtime", None):
        local.set_runtime(args.runtime)
    recorded.install()
    if getattr(args, "no_cache", False):
        import dspy

        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    if getattr(args, "router", None):
        from scale.models.pools import load_router

        load_router(args.router)


def spec_from_args(args: argparse.Namespace, **overrides: Any) -> ProgramSpec:
    """The program the options describe (no side effects: ``setup_process`` has them)."""
    from scale.programs import ProgramSpec

    return ProgramSpec.from_args(args, **overrides)


def load_examples(args: argparse.Namespace, n: int | None = None) -> list:
    """The examples the data options select (``n`` overrides ``--n``); says so when fewer
    than asked exist."""
    from scale.harness.datasets import load_dataset, read_ids

    filters: dict[str, Any] = {}
    if args.level:
        filters["level"] = args.level
    if args.subject:
        filters["subject"] = args.subject
    wanted = n or args.n
    examples = load_dataset(
        args.dataset,
        n=wanted,
        seed=args.seed,
        strict=args.strict,
        problem_field=args.problem_field,
        answer_field=args.answer_field,
        id_field=args.id_field,
        on_issue=lambda i: say(f"skipped {i}"),
        exclude_ids=set().union(*(read_ids(path) for path in args.exclude)),
        **filters,
    )
    if wanted and len(examples) < wanted:
        say(f"note: {args.dataset} has {len(examples)} examples for --n {wanted}; using all")
    return examples


def objective(args: argparse.Namespace):
    from scale.optimizers import CostAware

    if args.objective == "accuracy":
        return CostAware(budget=args.token_budget)
    return CostAware(lam=lambda_of(args), budget=args.token_budget)


def lambda_of(args: argparse.Namespace) -> float:
    """The cost weight per token: ``--lambda`` (old spelling) or ``--points-per-1k``."""
    return args.lam if args.lam is not None else args.points_per_1k / 100_000


def dataset_params(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("dataset", "n", "seed", "level", "subject", "threads")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def tracked_run(
    args: argparse.Namespace, name: str, spec: ProgramSpec | None = None, **extra: Any
) -> AbstractContextManager[Tracker]:
    """The MLflow run a command logs to, as its tracking options ask."""
    from scale import tracking

    params = {**(spec.params() if spec else {}), **dataset_params(args), **extra}
    return tracking.run(
        name,
        enabled=not args.no_mlflow,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        params=params,
        trace=not args.no_trace,
    )


def models_label(spec: ProgramSpec) -> str:
    """The model(s) of a run, as reports name them."""
    system1, system2 = spec.system_models
    return (
        spec.model
        if system1 == system2 == spec.model
        else f"System 1 {system1}, System 2 {system2}"
    )


def require_scale(program: Any) -> None:
    from scale.programs import SCALE

    if not isinstance(program, SCALE):
        raise UsageError(
            "routing search needs a SCALE program: --method scale, uniform-s1 or uniform-s2"
        )
