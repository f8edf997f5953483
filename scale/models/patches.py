"""The changes this project makes to DSPy's and litellm's behaviour, in one place.

Each patch wraps one private function of DSPy 3.4 (``TESTED_DSPY``); ``apply`` installs them
once (``scale.models.lm`` calls it on import), refuses with a clear error when a target is
gone, and warns once on a DSPy outside the tested series:

- a cache hit keeps the token counts of the original call (``_keep_cached_usage``);
- a server's Retry-After is capped at ``MAX_RETRY_WAIT`` (``_cap_retry_wait``);
- each attempt gets a wall-clock deadline and is abandoned past it or once cancelled
  (``cancellable``), its request closed where the runtime can (``on_abandon``), with at
  most ``MAX_ABANDONED`` abandoned requests still running (``_bound_calls``);
- the endpoint (``api_base``) is part of the cache key (``_key_cache_on_endpoint``);
- DSPy's warning on every reply cut at max_tokens is silenced (``_NoTruncationWarning``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import dspy
import litellm

TESTED_DSPY = "3.4."
MAX_RETRY_WAIT = 60.0  # seconds between retries at most, whatever Retry-After asks
CANCEL_POLL_SECONDS = 0.05  # how often a call in flight looks at its cancel event


class _NoTruncationWarning(logging.Filter):
    """DSPy warns on every reply cut at max_tokens; the programs record those themselves
    (``Fallback.NO_ANSWER``, the adapter's re-ask), so the warning is only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "response was truncated" not in record.getMessage()


def usage_numbers(usage: Any) -> tuple[int, int]:
    """Prompt and completion tokens of a litellm usage (object or dict; None: 0, 0)."""
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, dict) else lambda k, d=None: getattr(usage, k, d)
    return int(get("prompt_tokens", 0) or 0), int(get("completion_tokens", 0) or 0)


def _keep_cached_usage() -> None:
    """DSPy clears ``usage`` on responses served from its cache; keep the original numbers
    in ``_hidden_params`` so a cache hit is still counted at what the call cost."""
    from dspy.clients.cache import Cache

    original = Cache._prepare_cached_response
    if getattr(original, "_keeps_usage", False):
        return

    def prepare(self: Cache, response: Any) -> Any:
        usage = getattr(response, "usage", None)
        prepared = original(self, response)
        hidden = getattr(prepared, "_hidden_params", None)
        if usage and isinstance(hidden, dict):
            prepared._hidden_params = {**hidden, "cached_usage": usage_numbers(usage)}
        return prepared

    prepare._keeps_usage = True  # type: ignore[attr-defined]
    Cache._prepare_cached_response = prepare


def _cap_retry_wait() -> None:
    """DSPy waits as long as a server's Retry-After asks before retrying; a server asking
    for an hour (or a far-off HTTP date) would stall the run. Every wait is capped at
    ``MAX_RETRY_WAIT``, DSPy's own longest backoff step."""
    from dspy.clients import execution

    original = execution._delay
    if getattr(original, "_capped", False):
        return

    def delay(exc: Exception, attempt: int) -> float:
        return min(original(exc, attempt), MAX_RETRY_WAIT)

    delay._capped = True  # type: ignore[attr-defined]
    execution._delay = delay


class CallCancelled(RuntimeError):
    """The work this call belonged to was cancelled (``cancellable``)."""


_cancel: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "scale_cancel", default=None
)


@contextlib.contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Inside the block, once ``event`` is set no further model call is sent, and a call in
    flight whose runtime can close its request (``on_abandon``: the local runtimes) is
    closed at once; either raises ``CallCancelled``. A remote call in flight finishes."""
    token = _cancel.set(event)
    try:
        yield
    finally:
        _cancel.reset(token)


def check_cancelled() -> None:
    """Raise ``CallCancelled`` if the work of this call was cancelled."""
    event = _cancel.get()
    if event is not None and event.is_set():
        raise CallCancelled("the request was cancelled: no further model calls")


MAX_ABANDONED = 8  # abandoned requests (past the deadline, cancelled) still running
_abandoned = {"n": 0}
_abandoned_lock = threading.Lock()


class _Attempt:
    """One bounded call running in a worker thread; the caller abandons it past its
    deadline or on cancel, and its hooks then close what it has open."""

    def __init__(self) -> None:
        self.done = False
        self.abandoned = False
        self.hooks: list[Callable[[], None]] = []

    def finish(self) -> None:
        with _abandoned_lock:
            self.done = True
            if self.abandoned:
                _abandoned["n"] -= 1

    def abandon(self) -> bool:
        """Abandon the call unless it has finished (False then); runs the hooks."""
        with _abandoned_lock:
            if self.done:
                return False
            self.abandoned = True
            _abandoned["n"] += 1
            hooks, self.hooks = self.hooks, []
        for hook in hooks:
            with contextlib.suppress(Exception):
                hook()
        return True

    def closable(self) -> bool:
        """Whether a request open now registered a way to close it."""
        with _abandoned_lock:
            return bool(self.hooks)

    def add(self, hook: Callable[[], None]) -> None:
        with _abandoned_lock:
            if not self.abandoned:
                self.hooks.append(hook)
                return
        with contextlib.suppress(Exception):
            hook()

    def discard(self, hook: Callable[[], None]) -> None:
        with _abandoned_lock:
            if hook in self.hooks:
                self.hooks.remove(hook)


_attempt: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "scale_attempt", default=None
)


@contextlib.contextmanager
def on_abandon(hook: Callable[[], None]) -> Iterator[None]:
    """While the block runs (a runtime's request is open), run ``hook`` (e.g. shut a
    socket) if the model call this code serves is abandoned, past its deadline or
    cancelled; at once if it already was. Outside a bounded call it does nothing."""
    attempt = _attempt.get()
    if attempt is None:
        yield
        return
    attempt.add(hook)
    try:
        yield
    finally:
        attempt.discard(hook)


def _bound_calls() -> None:
    """litellm's ``timeout`` bounds each read, so a server sending a byte every few
    seconds could hold a call forever. Each attempt DSPy makes through litellm runs in a
    worker thread with a wall-clock deadline of its ``timeout``: past it the caller stops
    waiting, the attempt's ``on_abandon`` hooks close its request (the local runtimes
    register them; a remote request ends in the daemon thread) and the attempt fails as a
    timeout (retried like one). Once its work is cancelled, a closable attempt is closed
    at once and fails as ``CallCancelled``; another runs to its end or deadline. At most
    ``MAX_ABANDONED`` abandoned requests may still be running: past that, a new attempt
    fails at once instead of piling more requests onto a backend that does not answer."""
    from dspy.clients import lm as lm_module

    original = lm_module.litellm_completion
    if getattr(original, "_bounded", False):
        return

    def completion(request: dict[str, Any], num_retries: int, cache: Any = None) -> Any:
        timeout = request.get("timeout")
        cancel = _cancel.get()
        if request.get("stream") or not (timeout or cancel):
            return original(request=request, num_retries=num_retries, cache=cache)
        check_cancelled()
        with _abandoned_lock:
            running = _abandoned["n"]
        if running >= MAX_ABANDONED:
            raise litellm.exceptions.Timeout(
                message=f"{running} earlier requests past their deadline are still running "
                "at the backend: not sending another",
                model=str(request.get("model")),
                llm_provider="scale",
            )
        box: dict[str, Any] = {}
        attempt = _Attempt()
        context = contextvars.copy_context()
        context.run(_attempt.set, attempt)

        def call() -> None:
            try:
                box["value"] = context.run(
                    original, request=request, num_retries=num_retries, cache=cache
                )
            except BaseException as exc:  # handed to the caller
                box["error"] = exc
            finally:
                attempt.finish()

        worker = threading.Thread(target=call, daemon=True, name="scale-lm-call")
        worker.start()
        deadline = time.monotonic() + float(timeout) if timeout else math.inf
        # on cancel, a request the runtime can close is closed at once; one it cannot (a
        # remote provider's) runs to its end or deadline, so its work stays counted
        while worker.is_alive() and not (cancel and cancel.is_set() and attempt.closable()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            worker.join(remaining if cancel is None else min(remaining, CANCEL_POLL_SECONDS))
        if attempt.abandon():
            check_cancelled()
            raise litellm.exceptions.Timeout(
                message=f"no complete reply within the {timeout:g} s deadline",
                model=str(request.get("model")),
                llm_provider="scale",
            )
        if "error" in box:
            raise box["error"]
        return box["value"]

    completion._bounded = True  # type: ignore[attr-defined]
    lm_module.litellm_completion = completion


def _key_cache_on_endpoint() -> None:
    """DSPy leaves ``api_base`` out of its cache keys, so the same model string served by
    two servers (or two quantizations behind one name) would share answers. The endpoint
    is made part of every key; the API key and the timeout (which change no answer) stay
    out."""
    from dspy.clients import execution

    execution.IGNORED_CACHE_KEYS[:] = ["api_key", "timeout"]


_TARGETS = (
    ("dspy.clients.cache", "Cache"),
    ("dspy.clients.execution", "_delay"),
    ("dspy.clients.execution", "IGNORED_CACHE_KEYS"),
    ("dspy.clients.lm", "litellm_completion"),
)


def apply() -> None:
    """Install every patch (idempotent)."""
    import importlib

    if not dspy.__version__.startswith(TESTED_DSPY):
        warnings.warn(
            f"scale's DSPy patches were tested on DSPy {TESTED_DSPY}x, this is "
            f"{dspy.__version__}: check token counts, retries and deadlines",
            stacklevel=2,
        )
    for module, name in _TARGETS:
        if not hasattr(importlib.import_module(module), name):
            raise RuntimeError(
                f"DSPy {dspy.__version__} has no {module}.{name}, which scale patches; "
                f"install the tested DSPy ({TESTED_DSPY}x)"
            )
    _keep_cached_usage()
    _cap_retry_wait()
    _bound_calls()
    _key_cache_on_endpoint()
    logger = logging.getLogger("dspy.clients.lm")
    if not any(isinstance(f, _NoTruncationWarning) for f in logger.filters):
        logger.addFilter(_NoTruncationWarning())
