"""Reading a chat completion request: a bounded body, then its model, problem and stream
options, or the reason it is refused."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from scale.programs import MathProgram
from scale.programs.base import ProblemError, clean_problem

MAX_BODY_BYTES = 1 << 20  # as nginx's client_max_body_size
BODY_SECONDS = 30.0  # for the whole body to arrive


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


class Refused(Exception):
    """A request answered with an OpenAI-style error instead of a program run."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class Ask:
    """What a valid chat completion request asks for."""

    model: str
    problem: str
    stream: bool
    include_usage: bool


async def read_request(
    request: Request,
    programs: dict[str, MathProgram],
    *,
    max_body: int,
    body_seconds: float,
    max_problem_chars: int,
) -> Ask:
    """The request's model, problem and stream options; raises ``Refused`` with the reason."""
    try:
        body = json.loads(await _read_body(request, max_body, body_seconds))
        text = _problem(body)
        name, stream, include_usage = _options(body)
    except BodyError as exc:
        raise Refused(exc.status, str(exc)) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise Refused(400, f"invalid request: {exc}"[:500]) from None
    name = name or next(iter(programs))
    if name not in programs:
        raise Refused(404, f"no model {name[:100]!r}; see /v1/models", "model_not_found")
    if len(text) > max_problem_chars:
        raise Refused(
            400, f"the problem has {len(text)} characters, over the cap of {max_problem_chars}"
        )
    try:
        problem, _ = clean_problem(text, max_problem_chars)
    except ProblemError as exc:
        raise Refused(400, str(exc)) from None
    return Ask(name, problem, stream, include_usage)
