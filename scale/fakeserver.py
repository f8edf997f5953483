"""A small OpenAI-compatible chat server on loopback, for fault-injection tests and the
throughput benchmark. It fills whatever output fields a DSPy ChatAdapter prompt asks for
with fixed plausible values, after a fixed delay, and can inject faults at given rates:
HTTP 500, 429 with Retry-After, connection resets, slow responses, empty and garbage content.

Run: ``python -m scale.fakeserver --port 8009 --delay 0.2 --fault-rate 0.3``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]")
FAULTS = ("http500", "http429", "reset", "slow", "empty", "garbage")
VALUES: dict[str, Any] = {
    "reasoning": "Work through it step by step.",
    "subproblems": ["Find the first quantity", "Find what the question asks"],
    "difficulties": [0.4, 0.6],
    "difficulty": 0.5,
    "answer": "42",
    "best": 0,
}


@dataclass
class FaultPlan:
    """Rates (0..1) of each fault kind, drawn independently per request with ``seed``."""

    rates: dict[str, float] = field(default_factory=dict)
    retry_after: float = 0.2
    slow_seconds: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        if sum(self.rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    @classmethod
    def uniform(cls, total: float, **kwargs: Any) -> FaultPlan:
        """``total`` spread evenly over every fault kind."""
        return cls({f: total / len(FAULTS) for f in FAULTS}, **kwargs)

    def draw(self) -> str | None:
        with self._lock:
            x = self._rng.random()
        for fault in FAULTS:
            x -= self.rates.get(fault, 0.0)
            if x < 0:
                return fault
        return None


def reply_text(prompt: str) -> str:
    """A ChatAdapter-formatted reply with every output field the prompt asks for."""
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


class FakeServer:
    """The server, started on a free loopback port in a background thread."""

    def __init__(
        self,
        delay: float = 0.0,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.delay = delay
        self.faults = faults or FaultPlan()
        self.counts: dict[str, int] = {"requests": 0, **{f: 0 for f in FAULTS}}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
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

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict | str, headers: dict | None = None) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                server._count("requests")
                fault = server.faults.draw()
                if fault:
                    server._count(fault)
                time.sleep(server.delay)
                if fault == "http500":
                    return self._send(500, {"error": {"message": "injected server error"}})
                if fault == "http429":
                    return self._send(
                        429,
                        {"error": {"message": "injected rate limit"}},
                        {"Retry-After": f"{server.faults.retry_after:g}"},
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
    args = parser.parse_args()
    with FakeServer(args.delay, FaultPlan.uniform(args.fault_rate), port=args.port) as srv:
        print(f"serving {srv.url} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
