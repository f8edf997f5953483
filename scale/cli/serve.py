"""``scale serve``: programs behind an OpenAI-compatible endpoint."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

from scale.cli.options import (
    UsageError,
    add_model_options,
    add_program_options,
    positive,
    seconds,
)
from scale.cli.support import say, spec_from_args


def register(sub: argparse._SubParsersAction) -> None:
    from scale.serve import BODY_SECONDS, DEFAULT_DEADLINE, MAX_BODY_BYTES, MAX_CONNECTIONS

    p = sub.add_parser(
        "serve",
        help="serve tuned programs as an OpenAI-compatible endpoint",
        description="Serve one or more programs over HTTP, OpenAI-compatible: POST "
        "/v1/chat/completions (the last user message is the problem; stream: true sends each "
        "step as it completes), GET /v1/models, GET /health. Binds to 127.0.0.1 unless told "
        "otherwise.",
    )
    p.add_argument(
        "--program",
        action="append",
        default=[],
        metavar="TUNED.json",
        help="a program saved by `scale compile`, served as model FILE-STEM; repeatable "
        "(default: the method the options describe, served as scale-METHOD)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument(
        "--require-key",
        metavar="KEY",
        default=os.environ.get("SCALE_SERVE_KEY"),
        help="clients must send 'Authorization: Bearer KEY' (default: $SCALE_SERVE_KEY; none: "
        "allowed on a loopback --host only)",
    )
    p.add_argument(
        "--insecure-no-key",
        action="store_true",
        help="serve a non-loopback --host without a key (anyone who reaches it can use it)",
    )
    p.add_argument(
        "--max-in-flight",
        type=positive,
        default=4,
        help="problems solved at once; more get HTTP 429 with Retry-After (default: %(default)s)",
    )
    p.add_argument(
        "--deadline",
        type=seconds,
        default=DEFAULT_DEADLINE,
        help="seconds a request may take before HTTP 504 (default: %(default)s)",
    )
    p.add_argument(
        "--max-body",
        type=positive,
        default=MAX_BODY_BYTES,
        metavar="BYTES",
        help="largest request body; larger gets HTTP 413 (default: %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        type=positive,
        default=MAX_CONNECTIONS,
        help="open connections at once; more are closed at once (default: %(default)s)",
    )
    p.add_argument(
        "--body-timeout",
        type=seconds,
        default=BODY_SECONDS,
        help="seconds a request body may take to arrive; slower gets HTTP 408 (default: "
        "%(default)s); a new connection has 10 s for its headers, an idle one is closed "
        "after 5 s",
    )
    add_model_options(p)
    add_program_options(p, program=False)
    p.set_defaults(run=run)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_exposure(args: argparse.Namespace) -> None:
    """Refuse an empty key, and a non-loopback host without a key unless asked for."""
    if args.require_key is not None and not args.require_key.strip():
        raise UsageError("--require-key (or $SCALE_SERVE_KEY) is empty: give a key, or none")
    if not _loopback(args.host) and not args.require_key and not args.insecure_no_key:
        raise UsageError(
            f"serving on {args.host} without a key lets anyone who reaches it use it: set "
            "--require-key KEY (or $SCALE_SERVE_KEY), or pass --insecure-no-key"
        )
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from scale.serve import create_app, guarded_protocol

    check_exposure(args)
    programs = {}
    for path in args.program:
        programs[Path(path).stem] = spec_from_args(args, program=path).build()
    if not programs:
        program = spec_from_args(args, program=None).build()
        programs[f"scale-{program.method}"] = program
    if len(programs) != len(args.program or [None]):
        raise UsageError("two --program files have the same name (file stem)")
    if not _loopback(args.host) and not args.require_key:
        say(f"warning: serving on {args.host} without a key (--insecure-no-key)")
    app = create_app(
        programs,
        api_key=args.require_key or None,
        max_in_flight=args.max_in_flight,
        deadline=args.deadline,
        max_body=args.max_body,
        body_seconds=args.body_timeout,
    )
    say(f"serving {', '.join(programs)} on http://{args.host}:{args.port}/v1 (Ctrl-C stops)")
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        http=guarded_protocol(max_connections=args.max_connections),
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 << 10,  # request line and headers
    )
    return 0
