"""The ``scale`` command: one module per command, each a thin layer over the public API
(parse the options, call the API, print)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from scale.cli import bench, evaluation, misc, search, serve, solve
from scale.cli.options import Parser, UsageError
from scale.cli.support import printable, say, setup_process

COMMANDS = (solve, evaluation, search, bench, serve, misc)


def build_parser() -> Parser:
    parser = Parser(
        prog="scale",
        description="SCALE: selective resource allocation for math problems, as a DSPy "
        "program. Rate a problem, decompose the hard ones, rate each step, send hard steps "
        "to a deliberate System 2 and easy ones to a fast System 1.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    from scale.harness.datasets import DatasetError
    from scale.models.llama_server import ServerError
    from scale.models.packaged import ModelError
    from scale.models.pools import RouterError
    from scale.optimizers import ResultsFileError
    from scale.programs import OverlapError, ProblemError, ProgramFileError, RoutingError
    from scale.sandbox import SandboxUnavailable

    return (
        UsageError,
        DatasetError,
        ModelError,
        ServerError,
        ProblemError,
        ProgramFileError,
        RoutingError,
        SandboxUnavailable,
        ResultsFileError,
        OverlapError,
        RouterError,
    )


def _leave_now(signum: int, frame: object) -> None:  # a second Ctrl-C
    os._exit(130)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scale`` console script. Exit codes: 0 done, 1 failed (every
    example errored, or an unexpected error), 2 bad usage or input, 130 interrupted."""
    args = build_parser().parse_args(argv)
    try:
        setup_process(args)
        return args.run(args)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, _leave_now)
        say("interrupted: results written so far are kept; rerun with --resume to continue")
        return 130
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            say(f"scale: error: {printable(exc)}")
            return 2
        if os.environ.get("SCALE_DEBUG"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        say(
            f"scale: error: {type(exc).__name__}: {printable(first)} (set SCALE_DEBUG=1 for "
            "the traceback)"
        )
        return 1
    finally:
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
