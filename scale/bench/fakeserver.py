"""A small OpenAI-compatible chat server on loopback, for fault-injection tests and the
throughput benchmark. It fills whatever output fields a DSPy ChatAdapter prompt asks for
with fixed plausible values, after a fixed delay, and can inject faults at given rates (or
in a fixed order, ``FaultPlan.script``): HTTP 500, 429 with Retry-After, connection resets,
slow responses, empty and garbage content. Every request is logged with its arrival time,
a key identifying the call (retries of one call repeat its body) and the fault served, so a
test can check retry counts and backoff spacing.

Run: ``python -m scale.bench.fakeserver --port 8009 --delay 0.2 --fault-rate 0.3``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import random
import re
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]")
FAULTS = ("http500", "http429", "reset", "slow", "empty", "garbage")
# scripted or given a rate explicitly only (never spread by ``FaultPlan.uniform``)
SLOW_DRIP = "trickle"  # the reply's bytes one at a time, ``trickle_seconds`` apart
VALUES: dict[str, Any] = {
    "reasoning": "Work through it step by step.",
    "subproblems": ["Find the first quantity", "Find what the question asks"],
    "difficulties": [0.4, 0.6],
    "difficulty": 0.5,
    "answer": "42",
    "calculation": "6 * 7",
    "best": 0,
}


@dataclass
class FaultPlan:
    """Rates (0..1) of each fault kind, drawn independently per request with ``seed``.

    ``script`` fixes the faults of the first requests in arrival order (``None`` = a normal
    reply); the rates apply after it. ``retry_after`` is the 429's Retry-After header value
    (seconds, or any text such as an HTTP date); ``slow_seconds`` how long a slow reply waits.
    """

    rates: dict[str, float] = field(default_factory=dict)
    retry_after: float | str = 0.2
    slow_seconds: float = 5.0
    trickle_seconds: float = 0.3
    seed: int = 0
    script: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        unknown = (set(self.rates) | set(self.script)) - {*FAULTS, SLOW_DRIP, None}
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        if sum(self.rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._scripted = iter(self.script)

    @classmethod
    def uniform(cls, total: float, **kwargs: Any) -> FaultPlan:
        """``total`` spread evenly over every fault kind."""
        return cls({f: total / len(FAULTS) for f in FAULTS}, **kwargs)

    def draw(self) -> str | None:
        """The fault for the next request, or ``None``."""
        with self._lock:
            scripted = next(self._scripted, "")
            if scripted != "":
                return scripted
            x = self._rng.random()
        for fault in (*FAULTS, SLOW_DRIP):
            x -= self.rates.get(fault, 0.0)
            if x < 0:
                return fault
        return None


def reply_text(prompt: str) -> str:
    """A reply with every output field the prompt asks for: free text for the native
    adapter, a JSON object when DSPy's JSONAdapter (its fallback after an unparseable reply)
    asks for one, else ChatAdapter's ``[[ ## field ## ]]`` format."""
    if not FIELD.search(prompt):  # the native adapter: free text
        if "Break the math problem" in prompt:
            return "\n".join(f"{i}. {s}" for i, s in enumerate(VALUES["subproblems"], 1))
        if "Rate how hard each" in prompt:
            return "\n".join(f"{i}. {d}" for i, d in enumerate(VALUES["difficulties"], 1))
        if "Rate how hard" in prompt:
            return str(VALUES["difficulty"])
        if "Choose the best candidate" in prompt:
            return str(VALUES["best"])
        return f"{VALUES['reasoning']}\nCalculation: {VALUES['calculation']}\n\\boxed{{42}}"
    _, json_marker, json_asked = prompt.rpartition("Respond with a JSON object")
    if json_marker:
        names = re.findall(r"`(\w+)`", json_asked) or ["answer"]
        return json.dumps({name: VALUES.get(name, "42") for name in names})
    asked = prompt.split("Respond with the corresponding output fields", 1)[-1]
    names = [n for n in FIELD.findall(asked) if n != "completed"]
    if not names:
        names = ["answer"]
    parts = []
    for name in dict.fromkeys(names):
        value = VALUES.get(name, "42")
        parts.append(
            f"[[ ## {name} ## ]]\n{value if isinstance(value, str) else json.dumps(value)}"
        )
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    t: float  # time.monotonic() at arrival
    key: str  # hash of the body: retries of one call share it
    fault: str | None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed, timed out) is expected here, not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    """The server, started on a free loopback port in a background thread."""

    def __init__(
        self,
        delay: float = 0.0,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        slots: int | None = None,
    ):
        self.delay = delay
        self.faults = faults or FaultPlan()
        # like a model server: at most ``slots`` requests are worked on at once (None: any)
        self._slots = threading.BoundedSemaphore(slots) if slots else contextlib.nullcontext()
        self.counts: dict[str, int] = {"requests": 0, **{f: 0 for f in (*FAULTS, SLOW_DRIP)}}
        self.log: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = _HTTPServer((host, port), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _record(self, body: bytes, fault: str | None) -> None:
        with self._lock:
            self.counts["requests"] += 1
            if fault:
                self.counts[fault] += 1
            self.log.append(Request(time.monotonic(), hashlib.sha1(body).hexdigest(), fault))

    def calls(self) -> dict[str, list[Request]]:
        """Requests grouped by call (same body), each group in arrival order."""
        with self._lock:
            log = sorted(self.log, key=lambda r: r.t)
        groups: dict[str, list[Request]] = {}
        for request in log:
            groups.setdefault(request.key, []).append(request)
        return groups

    def retries(self) -> list[tuple[str | None, int, float]]:
        """For every request that was sent again: (its fault, which attempt it was from 0,
        seconds until the next attempt arrived)."""
        return [
            (a.fault, i, round(b.t - a.t, 3))
            for group in self.calls().values()
            for i, (a, b) in enumerate(itertools.pairwise(group))
        ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(
                self,
                status: int,
                body: dict | str,
                headers: dict | None = None,
                drip: float | None = None,
            ) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    if drip is None:
                        self.wfile.write(data)
                        return
                    for i in range(len(data)):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(drip)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.close_connection = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                request = json.loads(body or b"{}")
                fault = server.faults.draw()
                server._record(body, fault)
                with server._slots:
                    time.sleep(server.delay)
                if fault == "http500":
                    return self._send(500, {"error": {"message": "injected server error"}})
                if fault == "http429":
                    return self._send(
                        429,
                        {"error": {"message": "injected rate limit"}},
                        {"Retry-After": str(server.faults.retry_after)},
                    )
                if fault == "reset":
                    # SO_LINGER 0 makes the close send a TCP RST; the read buffer holds a
                    # reference to the socket, so it is closed first or no close happens.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    self.rfile.close()
                    self.connection.close()
                    return None
                if fault == "slow":
                    time.sleep(server.faults.slow_seconds)
                prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
                text = {"empty": "", "garbage": "\x00 <<garbage>> }{ [[ ##"}.get(
                    fault or "", reply_text(prompt)
                )
                drip = server.faults.trickle_seconds if fault == SLOW_DRIP else None
                return self._send(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": 0,
                        "model": request.get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": len(prompt) // 4 + 1,
                            "completion_tokens": len(text) // 4 + 1,
                            "total_tokens": len(prompt) // 4 + len(text) // 4 + 2,
                        },
                    },
                    drip=drip,
                )

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8009)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds per answer")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="total injected fault rate, spread over all kinds",
    )
    parser.add_argument("--retry-after", default="0.2", help="a 429's Retry-After value")
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="a slow reply's wait")
    parser.add_argument("--seed", type=int, default=0, help="fault draw seed")
    args = parser.parse_args()
    plan = FaultPlan.uniform(
        args.fault_rate,
        retry_after=args.retry_after,
        slow_seconds=args.slow_seconds,
        seed=args.seed,
    )
    with FakeServer(args.delay, plan, port=args.port) as srv:
        print(f"serving {srv.url} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(json.dumps(srv.counts), flush=True)


if __name__ == "__main__":
    main()
