"""Load test of ``scale serve`` against a fake model server: what a crowd of clients,
some of them hostile, can make it do.

    python bench/serve_load.py [--clients 200] [--delay 0.5] [--max-in-flight 4]

200 clients arriving 20 ms apart, against the app on uvicorn with the protocol ``scale serve`` uses
(``guarded_protocol``) and a ``vote`` program of 3 chains whose model is a fake
OpenAI-compatible server answering after ``--delay`` seconds: 60% ask and wait, 20%
disconnect after 0.2 s, 20% never finish their headers (slowloris). Writes the requests
answered by status, the backend calls (never more than ``max_in_flight`` at once, nor than
the answered and dropped requests times the program's 3 calls), peak memory and open
sockets to ``bench/results/serve-load/report.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import dspy
import httpx
import uvicorn

from scale.bench.fakeserver import FakeServer
from scale.bench.report import machine
from scale.programs import Vote, system2
from scale.serve import create_app, guarded_protocol

OUT = Path(__file__).resolve().parent / "results" / "serve-load"
CHAINS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sockets() -> int:
    """Open sockets of this process (the app, its clients and the fake backend)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def _peak_overlap(starts: list[float], seconds: float) -> int:
    events = sorted([(t, 1) for t in starts] + [(t + seconds, -1) for t in starts])
    peak = running = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def run(clients: int, delay: float, max_in_flight: int) -> dict:
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    with FakeServer(delay=delay) as backend:
        program = Vote(system2("openai/fake", api_base=backend.url, samples=CHAINS, retries=0))
        app = create_app({"vote": program}, max_in_flight=max_in_flight, deadline=30)
        port = _free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="error", http=guarded_protocol(3.0)
        )
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        statuses: Counter = Counter()
        fds = {"peak": 0}
        lock = threading.Lock()
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                fds["peak"] = max(fds["peak"], _sockets())
                time.sleep(0.05)

        def client(i: int) -> None:
            kind = "slowloris" if i % 5 == 0 else "drop" if i % 5 == 1 else "ask"
            body = {"messages": [{"role": "user", "content": f"Problem {i}: what is {i} * 7?"}]}
            outcome = kind
            try:
                if kind == "slowloris":
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                        outcome = "slowloris closed" if conn.recv(1) == b"" else "slowloris open"
                else:
                    timeout = 0.2 if kind == "drop" else 60
                    outcome = str(httpx.post(url, json=body, timeout=timeout).status_code)
            except httpx.TimeoutException:
                outcome = "dropped by the client"
            except OSError as exc:
                outcome = f"{kind}: {type(exc).__name__}"
            with lock:
                statuses[outcome] += 1

        threading.Thread(target=watch, daemon=True).start()
        before = _sockets()
        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:  # arriving over clients x 20 ms
            t.start()
            time.sleep(0.02)
        for t in threads:
            t.join(120)
        time.sleep(max(delay * CHAINS + 1, 6))  # dropped programs stop; idle connections close
        wall = time.monotonic() - started
        stop.set()
        after = _sockets()
        server.should_exit = True
        calls = [r.t for r in backend.log]
    answered = statuses.get("200", 0)
    dropped = statuses.get("dropped by the client", 0)
    return {
        "clients": clients,
        "delay": delay,
        "max_in_flight": max_in_flight,
        "chains": CHAINS,
        "outcomes": dict(statuses.most_common()),
        "backend_calls": len(calls),
        "backend_calls_bound": (answered + dropped) * CHAINS,
        "backend_peak_in_flight": _peak_overlap(calls, delay),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sockets": {"before": before, "peak": fds["peak"], "after": after},
        "wall_seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--max-in-flight", type=int, default=4)
    args = parser.parse_args()
    found = run(args.clients, args.delay, args.max_in_flight)
    info = machine()
    found |= {"machine": info, "command": "python bench/serve_load.py"}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(found, indent=1) + "\n")
    lines = [
        "# scale serve under load",
        "",
        f"`{found['command']}` on {info['date'][:10]}, {info['cores']} cores, {info['cpu']}: "
        f"{found['clients']} clients arriving 20 ms apart (60% ask, 20% drop after 0.2 s, "
        f"20% stall their headers), a vote program of {CHAINS} chains, a fake model answering "
        "after "
        f"{found['delay']} s, --max-in-flight {found['max_in_flight']}.",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| outcome: {k} | {v} |" for k, v in found["outcomes"].items()),
        f"| backend calls | {found['backend_calls']} (bound: answered + dropped x {CHAINS} = "
        f"{found['backend_calls_bound']}) |",
        f"| backend calls at once, peak | {found['backend_peak_in_flight']} |",
        f"| peak memory (RSS, MB) | {found['peak_rss_mb']} |",
        f"| open sockets before / peak / after | {found['sockets']['before']} / "
        f"{found['sockets']['peak']} / {found['sockets']['after']} |",
        f"| wall seconds | {found['wall_seconds']} |",
    ]
    (OUT / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
