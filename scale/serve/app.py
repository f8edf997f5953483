"""The FastAPI app: slots, the program runs, the replies and the event stream."""

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
from scale.programs.base import MAX_PROBLEM_CHARS
from scale.serve.request import BODY_SECONDS, MAX_BODY_BYTES, Refused, read_request

DEFAULT_DEADLINE = 600.0


class Cancelled(Exception):
    """The client went away or the deadline passed: stop at the next stage boundary."""


def _error(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return JSONResponse(body, status_code=status, headers=headers)


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


class _Workers:
    """At most ``size`` programs at once, each in its own thread holding its slot until it
    has stopped; ``deadline`` seconds after it starts, its work is cancelled."""

    def __init__(self, size: int, deadline: float):
        self.size = size
        self.deadline = deadline
        self._busy = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take a slot; False when all are busy."""
        with self._lock:
            if self._busy >= self.size:
                return False
            self._busy += 1
            return True

    def _free(self) -> None:
        with self._lock:
            self._busy -= 1

    def start(
        self,
        program: MathProgram,
        problem: str,
        cancel: threading.Event,
        push: Callable[[str], None] | None,
    ) -> asyncio.Future:
        """Run ``program`` in a taken slot; cancelled (``cancel`` set, or the deadline),
        it makes no further call and a local call in flight is closed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        timer = threading.Timer(self.deadline, cancel.set)
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
                self._free()
            with contextlib.suppress(RuntimeError):  # the server stopped meanwhile
                loop.call_soon_threadsafe(settle, *outcome)

        timer.start()
        threading.Thread(target=work, daemon=True, name="scale-serve").start()
        return future


def _completion(pred: dspy.Prediction, name: str, ident: str, method: str) -> dict[str, Any]:
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
        "scale": _extra(pred, method),
    }


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
    workers = _Workers(max_in_flight, deadline)
    expected = f"Bearer {api_key}".encode() if api_key else None

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
            ask = await read_request(
                request,
                programs,
                max_body=max_body,
                body_seconds=body_seconds,
                max_problem_chars=max_problem_chars,
            )
        except Refused as exc:
            return _error(exc.status, str(exc), exc.kind)
        if not workers.take():
            return _error(
                429,
                f"all {max_in_flight} workers are busy; retry shortly",
                "rate_limit_error",
                {"Retry-After": str(retry_after)},
            )
        program = programs[ask.model]
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        cancel = threading.Event()
        if ask.stream:
            queue: asyncio.Queue = asyncio.Queue()
            loop = asyncio.get_running_loop()

            def push(text: str) -> None:
                with contextlib.suppress(RuntimeError):  # the server stopped meanwhile
                    loop.call_soon_threadsafe(queue.put_nowait, text)

            future = workers.start(program, ask.problem, cancel, push)
            events = _stream(
                program, ask.model, ident, cancel, future, queue, ask.include_usage, deadline
            )
            return StreamingResponse(events, media_type="text/event-stream")
        future = workers.start(program, ask.problem, cancel, None)
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
        return _completion(pred, ask.model, ident, program.method)

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
