"""The changes this project makes to DSPy's and litellm's behaviour, in one place.

Each patch wraps one private function of DSPy 3.4 (``TESTED_DSPY``); ``apply`` installs them
once (``scale.models.lm`` calls it on import), refuses with a clear error when a target is
gone, and warns once on a DSPy outside the tested series:

- a cache hit keeps the token counts of the original call (``_keep_cached_usage``);
- a server's Retry-After is capped at ``MAX_RETRY_WAIT`` (``_cap_retry_wait``);
- each attempt gets a wall-clock deadline, with at most ``MAX_ABANDONED`` requests past it
  still running (``_bound_calls``);
- the endpoint (``api_base``) is part of the cache key (``_key_cache_on_endpoint``);
- DSPy's warning on every reply cut at max_tokens is silenced (``_NoTruncationWarning``).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import warnings
from typing import Any

import dspy
import litellm

TESTED_DSPY = "3.4."
MAX_RETRY_WAIT = 60.0  # seconds between retries at most, whatever Retry-After asks


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


MAX_ABANDONED = 8  # requests past their deadline that may still run at the backend
_abandoned = {"n": 0}
_abandoned_lock = threading.Lock()


def _bound_calls() -> None:
    """litellm's ``timeout`` bounds each read, so a server sending a byte every few
    seconds could hold a call forever. Each attempt DSPy makes through litellm is given a
    wall-clock deadline of its ``timeout``: past it the attempt fails as a timeout (and is
    retried like one) while the abandoned request ends in a daemon thread. At most
    ``MAX_ABANDONED`` abandoned requests may still be running: past that, a new attempt
    fails at once instead of piling more requests onto a backend that does not answer."""
    from dspy.clients import lm as lm_module

    original = lm_module.litellm_completion
    if getattr(original, "_bounded", False):
        return

    def completion(request: dict[str, Any], num_retries: int, cache: Any = None) -> Any:
        timeout = request.get("timeout")
        if not timeout or request.get("stream"):
            return original(request=request, num_retries=num_retries, cache=cache)
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
        state = {"abandoned": False}
        context = contextvars.copy_context()

        def call() -> None:
            try:
                box["value"] = context.run(
                    original, request=request, num_retries=num_retries, cache=cache
                )
            except BaseException as exc:  # handed to the caller
                box["error"] = exc
            finally:
                with _abandoned_lock:
                    state["done"] = True
                    if state["abandoned"]:
                        _abandoned["n"] -= 1

        worker = threading.Thread(target=call, daemon=True, name="scale-lm-call")
        worker.start()
        worker.join(float(timeout))
        with _abandoned_lock:
            late = not state.get("done")
            if late:
                state["abandoned"] = True
                _abandoned["n"] += 1
        if late:
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
