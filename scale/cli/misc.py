"""``scale models``, ``scale doctor`` and ``scale throughput``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scale.cli.options import Parser, non_negative, positive, threads


def register(sub: argparse._SubParsersAction) -> None:
    from scale.models.local import MODEL_RUNTIMES

    p = sub.add_parser(
        "models",
        help="list the packaged local models and the local runtime",
        description="List the local models (installed or not, size, path) and which local "
        "runtime is in use.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run_models)

    p = sub.add_parser(
        "doctor",
        help="check the installation: versions, the llama.cpp build, models, llama-server",
        description="Report the installed versions, the CPU features this machine reports, "
        "the llama.cpp build and whether its test run passed here (a child process loads a "
        "model and generates one token, so a build that crashes on this CPU is named, not "
        "run), the local models and llama-server. Exit 1 when the test run failed.",
    )
    p.add_argument("--check", action="store_true", help="run the llama.cpp test run now")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run_doctor)

    p = sub.add_parser(
        "throughput",
        help="concurrency: problems/s at several thread counts, or a local model's tokens/s",
        description="Without --model: run a method against a local fake OpenAI-compatible "
        "server that answers after a fixed delay, so only the framework's own concurrency is "
        "measured. With --model local/...: aggregate generated tokens/s of that model at "
        "several concurrent requests on --runtime.",
    )
    p.add_argument(
        "--threads",
        type=lambda t: [threads(v) for v in t.split(",")],
        default=[1, 2, 4, 8],
        help="thread counts / concurrent requests (default: 1,2,4,8)",
    )
    p.add_argument("--n", type=positive, default=16, help="problems (default: %(default)s)")
    p.add_argument(
        "--delay",
        type=non_negative,
        default=0.5,
        help="seconds the fake server takes per call (default: %(default)s)",
    )
    p.add_argument(
        "--method",
        choices=("cot", "vote", "scale", "uniform-s2"),
        default="cot",
        help="method to run against the fake server (default: %(default)s)",
    )
    p.add_argument(
        "--servers",
        type=lambda t: [positive(v) for v in t.split(",")],
        help="measure a router/ pool instead: problems/s through 1, 2, ... fake servers with one "
        "slot each (e.g. 1,2,3), two examples in flight per server",
    )
    p.add_argument("--model", help="a local/ model: measure its generation speed instead")
    p.add_argument("--runtime", choices=MODEL_RUNTIMES, help="local runtime for --model")
    p.add_argument("--out", help="folder for throughput.json/.md")
    p.set_defaults(run=run_throughput)


def run_models(args: argparse.Namespace) -> int:
    from scale.models.local import runtime_name
    from scale.models.packaged import PACKAGED_MODELS, packaged_status

    rows = [packaged_status(m) for m in PACKAGED_MODELS.values()]
    if args.json:
        print(json.dumps({"runtime": runtime_name(), "models": rows}))
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
    print(
        f"Local runtime: {runtime_name()} "
        "(SCALE_LOCAL_RUNTIME=inproc|server|recorded|recorded+inproc|recorded+server, "
        "or --runtime)."
    )
    print("Also accepted: local/PATH.gguf, local/hf:REPO/FILE.gguf, and any litellm model string.")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    from scale import doctor

    found = doctor.report(check=args.check)
    print(json.dumps(found) if args.json else "\n".join(doctor.lines(found)))
    return 0 if doctor.healthy(found) else 1


def run_throughput(args: argparse.Namespace) -> int:
    from scale.bench import throughput
    from scale.bench.report import machine
    from scale.models import local
    from scale.programs.io import atomic_write_text

    if args.servers:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            rows = throughput.pools(args.servers, n=args.n, delay=args.delay, folder=folder)
        extra = {"delay_s": args.delay, "method": "cot", "router": "least-busy"}
    elif args.model:
        if not args.model.startswith("local/"):
            Parser(prog="scale throughput").error("--model must be a local/ model")
        rows = throughput.generation(args.model, args.threads)
        extra = {"model": args.model, "runtime": local.runtime_name()}
    else:
        rows = throughput.framework(args.threads, n=args.n, delay=args.delay, method=args.method)
        extra = {"delay_s": args.delay, "method": args.method}
    table = throughput.markdown(rows)
    if args.out:
        atomic_write_text(
            Path(args.out) / "throughput.json",
            json.dumps({"rows": rows, **extra, "machine": machine()}, indent=2),
        )
        atomic_write_text(Path(args.out) / "throughput.md", table + "\n")
    print(table)
    return 0
