"""``scale serve``: loaded programs behind an OpenAI-compatible endpoint (FastAPI).

- ``POST /v1/chat/completions``: the last user message is the problem; the reply's content
  is a short worked solution ending in the boxed answer; ``usage`` is the program's whole
  usage (every call it made); the extra field ``scale`` carries the steps. With
  ``stream: true`` each stage and step is sent as it completes (server-sent events), the
  answer last.
- ``GET /v1/models`` (one entry per program), ``GET /health``.

Limits answer as OpenAI clients expect: a malformed request, or a problem over the size
cap or empty -> 400, a body over ``max_body`` bytes -> 413, a body not sent within
``body_seconds`` -> 408, an unknown model -> 404, a missing or wrong bearer key -> 401
(compared in constant time), every worker busy -> 429 with ``Retry-After``, past the
per-request deadline -> 504; errors are OpenAI-style JSON. A slot is held until its
program has stopped: a client that disconnects, or a request past its deadline, cancels
it, and it makes no further model call (the call in flight finishes), so ``max_in_flight``
bounds the work at the backend. ``/health`` says "ok" and nothing more; no schema is
served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import dspy
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from scale.models.patches import cancellable
from scale.programs import MathProgram, ProgressCallback, reporting_to
from scale.programs.base import MAX_PROBLEM_CHARS, ProblemError, clean_problem

DEFAULT_DEADLINE = 600.0
MAX_BODY_BYTES = 1 << 20  # as nginx's client_max_body_size
BODY_SECONDS = 30.0  # for the whole body to arrive
HEADER_SECONDS = 10.0  # for a new connection's request line and headers
MAX_CONNECTIONS = 64


class Cancelled(Exception):
    """The client went away or the deadline passed: stop at the next stage boundary."""


def guarded_protocol(
    header_seconds: float = HEADER_SECONDS, max_connections: int = MAX_CONNECTIONS
) -> type:
    """uvicorn's h11 protocol, with two bounds it lacks: a connection past
    ``max_connections`` is closed at once, and one that has not sent a whole request line
    and headers within ``header_seconds`` is closed (slowloris)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._header_timer = None
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._header_timer = self.loop.call_later(header_seconds, self._too_slow)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None:
                self._stop_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timer()
            super().connection_lost(exc)

        def _stop_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

    return Guarded


def _error(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return JSONResponse(body, status_code=status, headers=headers)


class BodyError(Exception):
    """A request body that is too large (413) or too slow (408)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def _read_body(request: Request, cap: int, seconds: float) -> bytes:
    """The body, at most ``cap`` bytes (checked on Content-Length and while reading), all
    of it within ``seconds``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > cap):
        raise BodyError(413, f"the request body is over the cap of {cap} bytes")
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    ends = time.monotonic() + seconds
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(0.0, ends - time.monotonic()))
        except StopAsyncIteration:
            return b"".join(chunks)
        except asyncio.TimeoutError:
            raise BodyError(408, f"the request body did not arrive within {seconds:g} s") from None
        size += len(chunk)
        if size > cap:
            raise BodyError(413, f"the request body is over the cap of {cap} bytes")
        chunks.append(chunk)


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ValueError("the user message's content must be text or a list of content parts")
    texts = []
    for part in content:
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise ValueError("each content part must be an object with a 'type'")
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise ValueError("a text content part's 'text' must be a string")
            texts.append(part["text"])
    return "\n".join(texts)


def _problem(body: Any) -> str:
    """The text of the last user message; raises ValueError with the reason."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise ValueError("no user message: the last user message is the problem")
    return _text(users[-1].get("content"))


def _options(body: dict) -> tuple[str | None, bool, bool]:
    """(model, stream, include usage) as the request sets them; raises ValueError."""
    model, stream = body.get("model"), body.get("stream", False)
    options = body.get("stream_options")
    if model is not None and not isinstance(model, str):
        raise ValueError("'model' must be a string")
    if not isinstance(stream, bool):
        raise ValueError("'stream' must be true or false")
    if options is not None and not isinstance(options, dict):
        raise ValueError("'stream_options' must be an object")
    usage = (options or {}).get("include_usage", True)
    if not isinstance(usage, bool):
        raise ValueError("'stream_options.include_usage' must be true or false")
    return model, stream, usage


def _step_line(index: int, step: Any) -> str:
    difficulty = "" if step.difficulty is None else f", difficulty {step.difficulty:.2f}"
    return (
        f"Step {index + 1} (System {step.system}{difficulty}): {step.subproblem} -> {step.answer}"
    )


def _solution(pred: dspy.Prediction) -> str:
    steps = list(pred.steps)
    lines = [] if len(steps) == 1 else [_step_line(i, s) for i, s in enumerate(steps)]
    return "\n".join([*lines, f"Final answer: \\boxed{{{pred.answer}}}"]).strip()


def _extra(pred: dspy.Prediction, method: str) -> dict[str, Any]:
    keys = (
        "subproblem",
        "difficulty",
        "system",
        "answer",
        "prompt_tokens",
        "completion_tokens",
        "lm_calls",
    )
    return {
        "method": method,
        "steps": [{k: getattr(s, k) for k in keys} for s in pred.steps],
        "usage": pred.usage.to_dict(),
    }


def _usage(pred: dspy.Prediction) -> dict[str, int]:
    u = pred.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


class _Watch(ProgressCallback):
    """Forwards progress to the event loop and stops the program once cancelled."""

    def __init__(self, cancel: threading.Event, push: Callable[[str], None] | None):
        self.cancel = cancel
        self.push = push

    def _tell(self, text: str) -> None:
        if self.cancel.is_set():
            raise Cancelled
        if self.push is not None:
            self.push(text)

    def on_gated(self, rating, decision: str) -> None:
        shown = "?" if rating.difficulty is None else f"{rating.difficulty:.2f}"
        self._tell(f"Problem rated {shown}: {decision.replace('system', 'System ')}.\n")

    def on_decomposed(self, subproblems, notes) -> None:
        self._tell(f"Decomposed into {len(subproblems)} steps.\n")

    def on_step(self, index: int, step) -> None:
        self._tell(_step_line(index, step) + "\n")


def create_app(
    programs: dict[str, MathProgram],
    *,
    api_key: str | None = None,
    max_in_flight: int = 4,
    deadline: float = DEFAULT_DEADLINE,
    max_problem_chars: int = MAX_PROBLEM_CHARS,
    max_body: int = MAX_BODY_BYTES,
    body_seconds: float = BODY_SECONDS,
    retry_after: int = 2,
) -> FastAPI:
    """The ASGI app serving ``programs`` (name -> program)."""
    if not programs:
        raise ValueError("serve at least one program")
    if api_key is not None and not api_key:
        raise ValueError("an empty API key would let anyone in: give a key, or none")
    app = FastAPI(title="scale", docs_url=None, redoc_url=None, openapi_url=None)
    busy = {"n": 0}
    lock = threading.Lock()
    expected = f"Bearer {api_key}".encode() if api_key else None

    def take_slot() -> bool:
        with lock:
            if busy["n"] >= max_in_flight:
                return False
            busy["n"] += 1
            return True

    def free_slot() -> None:
        with lock:
            busy["n"] -= 1

    def start(program: MathProgram, problem: str, cancel: threading.Event, push) -> asyncio.Future:
        """Run the program in a thread holding a taken slot until it stops (cancelled, it
        makes no further call); the deadline cancels it even if no one is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        timer = threading.Timer(deadline, cancel.set)
        timer.daemon = True

        def settle(ok: bool, value: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(value)
                return
            future.set_exception(value)
            if cancel.is_set():  # no one waits for a cancelled program's error
                future.exception()

        def work() -> None:
            try:
                with cancellable(cancel), reporting_to(_Watch(cancel, push)):
                    outcome = (True, program(problem=problem))
            except BaseException as exc:  # handed to the request
                outcome = (False, exc)
            finally:
                timer.cancel()
                free_slot()
            with contextlib.suppress(RuntimeError):  # the server stopped meanwhile
                loop.call_soon_threadsafe(settle, *outcome)

        timer.start()
        threading.Thread(target=work, daemon=True, name="scale-serve").start()
        return future

    def refused(request: Request) -> JSONResponse | None:
        given = request.headers.get("authorization", "").encode()
        if expected is not None and not hmac.compare_digest(given, expected):
            return _error(401, "missing or wrong API key", "authentication_error")
        return None

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request):
        if (refusal := refused(request)) is not None:
            return refusal
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "scale"} for name in programs
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            body = json.loads(await _read_body(request, max_body, body_seconds))
            text = _problem(body)
            name, stream, include_usage = _options(body)
        except BodyError as exc:
            return _error(exc.status, str(exc), "invalid_request_error")
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            return _error(400, f"invalid request: {exc}"[:500], "invalid_request_error")
        name = name or next(iter(programs))
        if name not in programs:
            return _error(404, f"no model {name[:100]!r}; see /v1/models", "model_not_found")
        if len(text) > max_problem_chars:
            return _error(
                400,
                f"the problem has {len(text)} characters, over the cap of {max_problem_chars}",
                "invalid_request_error",
            )
        try:
            problem, _ = clean_problem(text, max_problem_chars)
        except ProblemError as exc:
            return _error(400, str(exc), "invalid_request_error")
        if not take_slot():
            return _error(
                429,
                f"all {max_in_flight} workers are busy; retry shortly",
                "rate_limit_error",
                {"Retry-After": str(retry_after)},
            )
        program = programs[name]
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        cancel = threading.Event()
        if stream:
            queue: asyncio.Queue = asyncio.Queue()
            loop = asyncio.get_running_loop()

            def push(text: str) -> None:
                with contextlib.suppress(RuntimeError):  # the server stopped meanwhile
                    loop.call_soon_threadsafe(queue.put_nowait, text)

            future = start(program, problem, cancel, push)
            events = _stream(program, name, ident, cancel, future, queue, include_usage, deadline)
            return StreamingResponse(events, media_type="text/event-stream")
        future = start(program, problem, cancel, None)
        started = time.monotonic()
        try:
            while not future.done():
                if time.monotonic() - started > deadline:
                    return _error(504, f"no answer within the {deadline:g} s deadline", "timeout")
                if await request.is_disconnected():
                    return _error(499, "the client went away", "cancelled")
                await asyncio.wait({future}, timeout=0.25)
            pred = future.result()
        except Exception as exc:
            return _error(500, f"{type(exc).__name__}: {exc}", "server_error")
        finally:
            cancel.set()
        return {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _solution(pred)},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(pred),
            "scale": _extra(pred, program.method),
        }

    return app


async def _stream(
    program: MathProgram,
    name: str,
    ident: str,
    cancel: threading.Event,
    future: asyncio.Future,
    queue: asyncio.Queue,
    include_usage: bool,
    deadline: float,
) -> AsyncIterator[str]:
    """Server-sent events: a role chunk, one content chunk per stage and step, the answer,
    a final chunk (finish reason, usage, steps), then ``[DONE]``."""
    created = int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
        data = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(data)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        started = time.monotonic()
        while not (future.done() and queue.empty()):
            if time.monotonic() - started > deadline:
                error = {
                    "message": f"no answer within the {deadline:g} s deadline",
                    "type": "timeout",
                }
                yield f"data: {json.dumps({'error': error})}\n\n"
                return
            with contextlib.suppress(asyncio.TimeoutError):
                yield chunk({"content": await asyncio.wait_for(queue.get(), timeout=0.25)})
        try:
            pred = future.result()
        except Exception as exc:
            error = {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}
            yield f"data: {json.dumps({'error': error})}\n\n"
            return
        yield chunk({"content": f"Final answer: \\boxed{{{pred.answer}}}"})
        usage = _usage(pred) if include_usage else None
        yield chunk({}, "stop", usage=usage, scale=_extra(pred, program.method))
        yield "data: [DONE]\n\n"
    finally:  # also when the client disconnects (the generator is cancelled)
        cancel.set()
