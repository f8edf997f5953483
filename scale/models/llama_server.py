"""A managed llama.cpp server for local models (``SCALE_LOCAL_RUNTIME=server``).

On first use of a GGUF file the project starts ``llama-server`` for it on 127.0.0.1 with a
free port, ``SCALE_SERVER_SLOTS`` parallel slots (continuous batching, prompt cache) and
waits for ``/health``; calls go to its OpenAI-compatible ``/v1/chat/completions``. The
server dies with this process (at exit, and through the kernel's parent-death signal if
this process is killed); a crashed server is restarted once, and the call that found it
dead fails (DSPy retries it, or it becomes a recorded error).

The binary is built by ``make setup`` from the llama.cpp source pinned by
llama-cpp-python, with the Makefile's CPU flags, into the environment's ``bin`` folder;
``SCALE_LLAMA_SERVER`` points at another build.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from scale.models.patches import on_abandon

STARTUP_SECONDS = 180.0
DEFAULT_SLOTS = 4


class ServerError(RuntimeError):
    """The local server cannot be started or did not answer; the message says why."""


class _Abandoned(ServerError):
    """A request closed because the call it served was abandoned (no one reads its reply)."""


def binary() -> Path:
    """The llama-server executable: ``$SCALE_LLAMA_SERVER``, the environment's own, or
    one on ``PATH``."""
    chosen = os.environ.get("SCALE_LLAMA_SERVER")
    candidates = [Path(chosen)] if chosen else []
    candidates.append(Path(sys.prefix) / "bin" / "llama-server")
    found = shutil.which("llama-server")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ServerError(
        "llama-server is not installed: build it with `make server` (from the llama.cpp "
        "source llama-cpp-python pins), or set SCALE_LLAMA_SERVER to a llama-server binary; "
        "or use the in-process runtime (--runtime inproc)"
    )


def _die_with_parent() -> None:  # runs in the child before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # a Ctrl-C meant for us is not delivered to the server


class _Spawner:
    """Starts child processes from one long-lived thread: the kernel's parent-death signal
    fires when the *thread* that forked the child ends, so a server started from a
    short-lived worker thread would be killed with that thread."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _run(self) -> None:
        while True:
            args, kwargs, done = self._jobs.get()
            try:
                done["process"] = subprocess.Popen(*args, **kwargs)
            except BaseException as exc:  # handed to the caller
                done["error"] = exc
            done["event"].set()

    def popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="scale-spawner")
                self._thread.start()
        done: dict[str, Any] = {"event": threading.Event()}
        self._jobs.put((args, kwargs, done))
        done["event"].wait()
        if "error" in done:
            raise done["error"]
        return done["process"]


_SPAWNER = _Spawner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ManagedServer:
    """One llama-server process for one GGUF file."""

    def __init__(self, model: Path, *, slots: int, n_ctx: int, threads: int):
        self.model = model
        self.slots = slots
        self.n_ctx = n_ctx
        self.threads = threads
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.restarts = 0
        self.log_path = (
            Path(os.environ.get("TMPDIR", "/tmp")) / f"scale-llama-server-{os.getpid()}.log"
        )
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until ``/health`` answers."""
        self.port = _free_port()
        command = [
            str(binary()),
            "-m", str(self.model),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--parallel", str(self.slots),
            "-c", str(self.n_ctx * self.slots),
            "-t", str(self.threads),
            "--jinja",
        ]  # fmt: skip
        log = self.log_path.open("ab")
        try:
            self.process = _SPAWNER.popen(
                command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        finally:
            log.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"llama-server exited at start: {self._log_tail()}")
            if self._healthy():
                return
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"llama-server did not become healthy in {STARTUP_SECONDS:g} s")

    def _healthy(self) -> bool:
        try:
            status, _ = self._request("GET", "/health", None, timeout=2.0)
        except OSError:
            return False
        return status == 200

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-600:].strip()
        return "(no log)"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure(self) -> None:
        """Started once; restarted once after a crash."""
        with self._lock:
            if self.alive():
                return
            if self.process is not None:
                if self.restarts >= 1:
                    raise ServerError(
                        f"llama-server crashed again after a restart: {self._log_tail()}"
                    )
                self.restarts += 1
            self.start()

    def _request(
        self, method: str, path: str, body: dict | None, timeout: float
    ) -> tuple[int, dict]:
        """One HTTP exchange; if the model call it serves is abandoned (past its deadline
        or cancelled), its socket is shut so the server stops the work (``_Abandoned``)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        abandoned = threading.Event()
        try:
            connection.connect()
            sock = connection.sock

            def close() -> None:
                abandoned.set()
                sock.shutdown(socket.SHUT_RDWR)

            with on_abandon(close):
                payload = json.dumps(body).encode() if body is not None else None
                headers = {"Content-Type": "application/json"} if payload else {}
                connection.request(method, path, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            if abandoned.is_set():
                raise _Abandoned(f"{method} {path}: closed, the call was abandoned") from exc
            raise
        finally:
            connection.close()
        try:
            return response.status, json.loads(data or b"{}")
        except json.JSONDecodeError:
            return response.status, {"error": data[:200].decode(errors="replace")}

    def complete(self, messages: list[dict], params: dict[str, Any], timeout: float) -> dict:
        """One chat completion (OpenAI response as a dict, with llama.cpp's ``timings``)."""
        self.ensure()
        process = self.process
        body = {"messages": messages, "cache_prompt": True, **params}
        try:
            status, data = self._request("POST", "/v1/chat/completions", body, timeout)
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            if _exited(process):
                self.ensure()  # restart once; this call fails, its retry finds the new server
                raise ServerError("llama-server crashed during the call; it was restarted") from exc
            raise
        if status != 200:
            message = data.get("error")
            if isinstance(message, dict):
                message = message.get("message")
            raise ServerError(f"llama-server answered HTTP {status}: {message}")
        return data

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _exited(process: subprocess.Popen | None, grace: float = 5.0) -> bool:
    """Whether ``process`` has died. A dropped connection can arrive just before its dead
    server can be reaped, so wait up to ``grace`` seconds for it."""
    if process is None:
        return True
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        return False
    return True


class Servers:
    """The managed servers of this process, one per model file."""

    def __init__(self) -> None:
        self._servers: dict[Path, ManagedServer] = {}
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def get(self, model: Path, *, n_ctx: int) -> ManagedServer:
        with self._lock:
            if model not in self._servers:
                slots = int(os.environ.get("SCALE_SERVER_SLOTS", DEFAULT_SLOTS))
                self._servers[model] = ManagedServer(
                    model, slots=max(1, slots), n_ctx=n_ctx, threads=os.cpu_count() or 1
                )
            return self._servers[model]

    def stop_all(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.stop()


SERVERS = Servers()
