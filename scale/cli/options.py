"""The options the commands share, and the checks of their values."""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

MAX_THREADS = 256


class UsageError(Exception):
    """A bad option value: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1]")
    return value


def replies(text: str) -> int:
    """The agreement estimator's number of replies: 2..16 (what a program file may hold)."""
    value = positive(text)
    if not 2 <= value <= 16:
        raise argparse.ArgumentTypeError(f"{text} must be in 2..16")
    return value


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def sample_cap(text: str) -> int:
    from scale.programs.stopping import MAX_SAMPLES

    value = positive(text)
    if value > MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"{text} is over the cap of {MAX_SAMPLES} samples")
    return value


def threads(text: str) -> int:
    value = positive(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{text} threads is more than the {MAX_THREADS} allowed")
    return value


def seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return value


def csv_fractions(text: str) -> list[float | None]:
    values: list[float | None] = []
    for part in text.split(","):
        part = part.strip()
        if part:
            values.append(None if part.lower() == "none" else fraction(part))
    if not values:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return values


def add_model_options(p: argparse.ArgumentParser) -> None:
    from scale.models.adapter import ADAPTERS
    from scale.models.lm import DEFAULT_MODEL, DEFAULT_RETRIES, DEFAULT_TIMEOUT
    from scale.models.local import RUNTIMES
    from scale.programs.stopping import STOP_KINDS

    g = p.add_argument_group("models")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="any litellm model string (openai/gpt-4o-mini, ollama_chat/qwen3, ...) or "
        "local/NAME, local/PATH.gguf, local/hf:REPO/FILE.gguf (default: %(default)s)",
    )
    g.add_argument(
        "--api-base",
        help="URL of an OpenAI-compatible server (vLLM, llama.cpp server, Ollama); "
        "default: the provider's own",
    )
    g.add_argument(
        "--api-key",
        help="API key for --api-base or the provider (default: the provider's environment "
        "variable)",
    )
    g.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        help="wall-clock seconds one LM call may take before it fails and is retried "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        choices=range(11),
        metavar="N",
        help="retries of a failed LM call (0-10), with exponential backoff that honours "
        "Retry-After (default: %(default)s)",
    )
    g.add_argument(
        "--router",
        metavar="ROUTER.yaml",
        help="model pools in litellm Router's format (model_list, router_settings): a model "
        "named router/POOL spreads its calls over POOL's deployments, with retries, cooldowns "
        "and fallbacks",
    )
    g.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="how local/ models run: inproc (llama.cpp in this process), server (a managed "
        "llama-server with parallel slots), recorded (no model: calls answered from the "
        "cot and vote rows of the bench folder $SCALE_RECORDINGS), or recorded+inproc / "
        "recorded+server (the calls those rows hold answered from them, the rest run on the "
        "model: e.g. vote with more chains than were drawn) (default: $SCALE_LOCAL_RUNTIME "
        "or inproc)",
    )
    g.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write DSPy's cache: every call runs the model (for timing; "
        "by default a request made before is answered from the cache, in no model time)",
    )
    g.add_argument(
        "--adapter",
        choices=ADAPTERS,
        help="prompt format: native (what chat models are trained on; default for local/ "
        "models), chat (DSPy's field markers; default for others) or json",
    )
    g.add_argument(
        "--system1-model", help="model for System 1, decomposition and scoring (default: --model)"
    )
    g.add_argument("--system2-model", help="model for System 2 (default: --model)")
    g.add_argument(
        "--system1-kind",
        choices=("direct", "brief", "reasoning"),
        help="System 1's compute level: direct (answer only), brief (a sentence or two and the "
        "calculation; default), reasoning (step by step, as System 2 without its samples)",
    )
    g.add_argument(
        "--system1-max-tokens",
        type=positive,
        help="System 1 token budget per call (default: 384; reasoning 1024)",
    )
    g.add_argument(
        "--system2-max-tokens", type=positive, help="System 2 token budget per call (default: 1024)"
    )
    g.add_argument(
        "--system2-samples",
        type=sample_cap,
        help="System 2 self-consistency: at most this many chains, majority answer (default: "
        "1; vote 5, adaptive-vote and esc 8)",
    )
    g.add_argument(
        "--system2-stop",
        choices=STOP_KINDS,
        help="when System 2 stops sampling: fixed (all samples), adaptive "
        "(Adaptive-Consistency at --system2-confidence), window (ESC windows of "
        "--system2-window)",
    )
    g.add_argument(
        "--system2-confidence",
        type=fraction,
        help="Adaptive-Consistency confidence (default: 0.95)",
    )
    g.add_argument("--system2-window", type=positive, help="ESC window size (default: 4)")
    g.add_argument(
        "--system2-greedy-first",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with self-consistency, make the first chain the greedy one (CoT's own call), "
        "the rest sampled (default: all sampled)",
    )
    g.add_argument(
        "--system2-logprobs",
        action="store_true",
        default=None,
        help="System 2's greedy calls also ask for token logprobs, stored with each sample "
        "in the results (e.g. on a bench's cot, so that the recorded runtime can serve the "
        "confidence estimators from it)",
    )


def add_program_options(
    p: argparse.ArgumentParser, *, methods: bool = True, program: bool = True
) -> None:
    from scale.programs import METHODS, PRESETS
    from scale.programs.estimators import ESTIMATORS
    from scale.programs.route import MODES

    g = p.add_argument_group("method")
    if methods:
        g.add_argument(
            "--method",
            choices=METHODS,
            default="scale",
            help="scale, or a baseline: cot (one chain of thought), vote / adaptive-vote / esc "
            "(self-consistency: fixed, Adaptive-Consistency, ESC), uniform-s1 / uniform-s2 "
            "(SCALE with every step on one system) (default: %(default)s)",
        )
    g.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="efficient",
        help="; ".join(f"{k}: {v.description}" for k, v in PRESETS.items())
        + " (default: %(default)s)",
    )
    if program:
        g.add_argument(
            "--program",
            metavar="TUNED.json",
            help="a program saved by `scale compile` (its method, prompts, routing and System "
            "knobs; options given here still override them)",
        )
    g.add_argument(
        "--estimator",
        help=f"difficulty estimator: {', '.join(ESTIMATORS)}, or several joined with '+' "
        "(e.g. agreement+check) (default: the preset's)",
    )
    g.add_argument(
        "--route",
        dest="mode",
        choices=MODES,
        help="threshold: System 2 above --threshold; budget: the hardest --budget fraction "
        "of steps (default: threshold)",
    )
    g.add_argument(
        "--agreement-samples",
        type=replies,
        metavar="M",
        help="replies the agreement estimator compares: the greedy one and M-1 samples "
        "(default: the preset's; efficient 2, others 3)",
    )
    g.add_argument(
        "--threshold", type=fraction, help="step difficulty above which System 2 is used"
    )
    g.add_argument(
        "--budget", type=fraction, help="fraction of steps sent to System 2 with --route budget"
    )
    g.add_argument(
        "--gate",
        type=fraction,
        help="problems rated at or below this are answered by System 1 at once (default: "
        "the preset's; see --decompose)",
    )
    g.add_argument(
        "--decompose",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decompose the problems above the gate (default), or let System 2 answer them "
        "whole (--no-decompose)",
    )


def add_data_options(p: argparse.ArgumentParser, *, n_default: int | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        required=True,
        help="gsm8k, math500, aime24, aime25, amc23, or a .jsonl/.csv file with problem and "
        "answer columns",
    )
    g.add_argument(
        "--n",
        type=positive,
        default=n_default,
        help="number of examples, sampled deterministically with --seed (default: "
        "%(default)s; None = all)",
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
    g.add_argument("--problem-field", default="problem", help="problem column of a user file")
    g.add_argument("--answer-field", default="answer", help="answer column of a user file")
    g.add_argument(
        "--id-field",
        default="id",
        help="id column of a user file (missing ids become FILE-LINE)",
    )


def add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=threads,
        default=1,
        help="examples solved in parallel (default: %(default)s; local models run one call at "
        "a time unless --runtime server)",
    )


def add_resume_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue --out: skip the ids already there and append the rest (the file's "
        "header must name the same method, models and program)",
    )
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="with --resume, run again the examples recorded with an error (a timeout, a dead "
        "server, an unreadable reply); the new row supersedes the error row",
    )


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    from scale.tracking import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI

    g = p.add_argument_group("tracking")
    g.add_argument(
        "--tracking-uri",
        help=f"MLflow tracking store (default: $MLFLOW_TRACKING_URI or {DEFAULT_TRACKING_URI})",
    )
    g.add_argument(
        "--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment (default: %(default)s)"
    )
    g.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    g.add_argument(
        "--no-trace",
        action="store_true",
        help="log runs but no traces (by default each program call is traced: module tree, "
        "every LM call, tokens, latency)",
    )


def add_search_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("routing search")
    g.add_argument(
        "--thresholds",
        type=csv_fractions,
        default=[round(0.1 * i, 1) for i in range(11)],
        help="step thresholds to try, comma-separated (default: 0,0.1,...,1)",
    )
    g.add_argument(
        "--gates",
        type=csv_fractions,
        help="problem gates to try, comma-separated; 'none' = no gate (default: the program's own)",
    )
    g.add_argument(
        "--objective",
        choices=("accuracy", "cost-aware"),
        default="accuracy",
        help="what the chosen setting maximizes: accuracy (ties go to fewer tokens), or "
        "cost-aware: accuracy points (100 = every problem right) less --points-per-1k per "
        "1,000 tokens per problem (default: %(default)s)",
    )
    g.add_argument(
        "--points-per-1k",
        type=non_negative,
        default=10.0,
        metavar="P",
        help="for --objective cost-aware: the accuracy points 1,000 more tokens per problem "
        "must buy (default: %(default)s, i.e. +1 point of accuracy is worth 100 tokens)",
    )
    # the old spelling: accuracy (0-1) per token, i.e. points per 1k = lambda * 100,000
    g.add_argument("--lambda", dest="lam", type=non_negative, help=argparse.SUPPRESS)
    g.add_argument(
        "--budget-tokens",
        dest="token_budget",
        type=positive,
        metavar="N",
        help="only settings spending at most N tokens per problem on average count",
    )
    g.add_argument("--token-budget", dest="token_budget", type=positive, help=argparse.SUPPRESS)
