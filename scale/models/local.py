"""Local models (``local/NAME``, see ``scale.models.packaged``) behind a litellm custom provider
named ``local``.

Runtimes (``SCALE_LOCAL_RUNTIME`` or ``set_runtime``): ``inproc`` (the default) loads one
``Llama`` per model file in this process, shared by every LM that names it, with calls
serialized by one lock because a llama.cpp context is not thread-safe; ``server`` runs the
file behind a managed ``llama-server`` with parallel slots (``scale.models.llama_server``);
``recorded`` runs no model and answers from a benchmark's stored rows (``scale.harness.recorded``);
``recorded+inproc`` and ``recorded+server`` answer from them what they hold and run the model
for the rest (e.g. more chains per problem than a bench drew: the stored ones are replayed).
The runtime is part of each call's cache key (as its ``api_base``, ``local://RUNTIME``).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import litellm
from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError
from litellm.utils import custom_llm_setup

from scale.models.buildcheck import check_build, pip_install
from scale.models.packaged import PACKAGED_MODELS, PROVIDER, ModelError, hub_path, packaged_path
from scale.models.patches import on_abandon

DEFAULT_N_CTX = 8192
MODEL_RUNTIMES = ("inproc", "server")  # the runtimes that run a model
RECORDED = "recorded"
RUNTIMES = (*MODEL_RUNTIMES, RECORDED, *(f"{RECORDED}+{r}" for r in MODEL_RUNTIMES))
IN_PROCESS = ("inproc", f"{RECORDED}+inproc")  # the runtimes that load llama.cpp here
_runtime: str | None = None


class RecordingError(LookupError):
    """A request the recordings cannot answer."""


class RecordingStore(Protocol):
    """Stored replies, by request: ``(response dict, seconds)`` or ``RecordingError``."""

    def complete(self, model: str, messages: list, params: dict) -> tuple[dict, float]: ...


_recordings: Callable[[], RecordingStore] | None = None


def serve_recordings(source: Callable[[], RecordingStore] | None) -> None:
    """Where the recorded runtimes find their replies: ``source()`` gives the store on each
    call (it may load it on first use; a ``RecordingError`` it raises is the call's error)."""
    global _recordings
    _recordings = source


def runtime_name() -> str:
    """The process default local runtime (a profile or LM built without one uses it):
    ``set_runtime``'s choice, else ``$SCALE_LOCAL_RUNTIME``, else ``inproc``."""
    name = _runtime or os.environ.get("SCALE_LOCAL_RUNTIME") or "inproc"
    if name not in RUNTIMES:
        raise ModelError(f"SCALE_LOCAL_RUNTIME must be one of {', '.join(RUNTIMES)}, got {name!r}")
    return name


def check_runtime(name: str) -> str:
    """``name`` if it is a local runtime, else a ``ModelError`` naming the choices."""
    if name not in RUNTIMES:
        raise ModelError(f"the local runtime must be one of {', '.join(RUNTIMES)}, got {name!r}")
    return name


def set_runtime(name: str | None) -> None:
    """Set the process default runtime (None: back to ``$SCALE_LOCAL_RUNTIME`` / inproc);
    the CLI's process setup does, from ``--runtime``."""
    global _runtime
    _runtime = None if name is None else check_runtime(name)


_resolved: dict[str, Path] = {}


def resolve(name: str) -> Path:
    """Map the part after ``local/`` to a GGUF file on disk (found once per process)."""
    if name not in _resolved:
        _resolved[name] = _resolve(name)
    return _resolved[name]


def _resolve(name: str) -> Path:
    if name in PACKAGED_MODELS:
        return packaged_path(PACKAGED_MODELS[name])
    if name.startswith("hf:"):
        return hub_path(name)
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelError(f"No GGUF file at {path}")
        return path
    known = ", ".join(f"{PROVIDER}/{n}" for n in PACKAGED_MODELS)
    raise ModelError(
        f"Unknown local model {PROVIDER}/{name}: use one of {known}, "
        f"{PROVIDER}/PATH.gguf or {PROVIDER}/hf:REPO/FILE.gguf"
    )


class _Runtime:
    """Loaded llama.cpp models, one per file and logits mode, with one lock serializing all
    calls. Token logprobs need an instance loaded with ``logits_all``, which computes the
    logits of every position and so slows every call; plain calls keep their own instance."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._models: dict[tuple[Path, bool], Any] = {}

    def get(self, path: Path, *, logits_all: bool) -> Any:
        """Return the model loaded in this mode, loading it on first use (call with
        ``self.lock`` held)."""
        key = (path, logits_all)
        if key in self._models:
            return self._models[key]
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelError(
                f"The local model runtime is not installed; install it with: {pip_install()}"
            ) from None
        check_build(lambda: path)  # a build that crashes on this CPU is reported, not run
        self._models[key] = Llama(
            model_path=str(path),
            n_ctx=int(os.environ.get("SCALE_LOCAL_N_CTX", DEFAULT_N_CTX)),
            n_threads=os.cpu_count() or 1,
            logits_all=logits_all,
            verbose=False,
        )
        return self._models[key]

    def close(self) -> None:
        """Free every loaded model (at exit, before the interpreter tears llama.cpp down);
        a call still running in an abandoned thread keeps its model (the process frees it)."""
        if not self.lock.acquire(timeout=1.0):
            return
        try:
            for llm in self._models.values():
                llm.close()
            self._models.clear()
        finally:
            self.lock.release()


RUNTIME = _Runtime()
atexit.register(RUNTIME.close)

_PASSED = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "logprobs",
    "top_logprobs",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
)


class LlamaCppProvider(CustomLLM):
    """litellm handler for ``local/...`` model strings."""

    def completion(
        self,
        model: str,
        messages: list,
        api_base: str,
        custom_prompt_dict: dict,
        model_response: litellm.ModelResponse,
        print_verbose,
        encoding,
        api_key,
        logging_obj,
        optional_params: dict,
        *args,
        **kwargs,
    ) -> litellm.ModelResponse:
        name = model.removeprefix(f"{PROVIDER}/")
        params = {k: v for k, v in optional_params.items() if k in _PASSED and v is not None}
        if params.get("max_tokens") is None:
            params["max_tokens"] = 512
        if params.get("top_logprobs") and not params.get("logprobs"):
            params["logprobs"] = True
        runtime = (api_base or "").removeprefix("local://")
        if runtime.startswith(RECORDED):
            response = self._recorded(model, messages, params, strict=runtime == RECORDED)
            if response is not None:
                return response
            runtime = runtime.removeprefix(f"{RECORDED}+")  # not recorded: the model runs
        try:
            path = resolve(name)
        except ModelError as exc:
            raise CustomLLMError(status_code=400, message=str(exc)) from None
        timeout = float(kwargs.get("timeout") or optional_params.get("timeout") or 600.0)
        if runtime == "server":
            result, seconds = self._on_server(path, messages, params, timeout)
        else:
            result, seconds = self._in_process(path, messages, params)
        return _response(model, result, seconds)

    @staticmethod
    def _recorded(
        model: str, messages: list, params: dict, *, strict: bool
    ) -> litellm.ModelResponse | None:
        """The stored reply to this request; None when no row holds it and not ``strict``.
        Recordings that cannot be loaded or served fail either way, as a request error (400):
        litellm would retry any other exception as a connection error."""
        if _recordings is None:
            raise CustomLLMError(
                status_code=400,
                message="recorded runtime: no recordings installed (the scale CLI installs "
                "$SCALE_RECORDINGS; in Python call scale.harness.recorded.install(FOLDER))",
            )
        try:
            store = _recordings()
        except RecordingError as exc:
            raise CustomLLMError(status_code=400, message=f"recorded runtime: {exc}") from None
        try:
            qualified = f"{PROVIDER}/{model.removeprefix(f'{PROVIDER}/')}"
            response = _response(model, *store.complete(qualified, messages, params))
        except RecordingError as exc:
            if strict:
                raise CustomLLMError(status_code=404, message=f"recorded runtime: {exc}") from None
            return None
        except Exception as exc:
            raise CustomLLMError(
                status_code=400, message=f"recorded runtime: a malformed recording: {exc!r}"
            ) from None
        response._hidden_params["recorded"] = True  # counted as served, not spent
        return response

    @staticmethod
    def _in_process(path: Path, messages: list, params: dict) -> tuple[dict, float]:
        """One completion by the in-process model; an abandoned call (past its deadline or
        cancelled) stops at its next token, or before it starts."""
        from llama_cpp import LogitsProcessorList

        want_logprobs = bool(params.get("logprobs"))
        abandoned = threading.Event()
        with on_abandon(abandoned.set), RUNTIME.lock:
            if abandoned.is_set():
                raise CustomLLMError(status_code=499, message="the call was abandoned")
            started = time.perf_counter()  # after the lock: queueing is not model time
            try:
                llm = RUNTIME.get(path, logits_all=want_logprobs)
            except ModelError as exc:
                raise CustomLLMError(status_code=500, message=str(exc)) from None

            def end_if_abandoned(_ids: Any, scores: Any) -> Any:
                if abandoned.is_set():  # only the end-of-text token may follow
                    eos = llm.token_eos()
                    kept = scores[eos]
                    scores[:] = -float("inf")
                    scores[eos] = kept
                return scores

            try:
                result = llm.create_chat_completion(
                    messages=messages,
                    logits_processor=LogitsProcessorList([end_if_abandoned]),
                    **params,
                )
            except Exception as exc:
                raise CustomLLMError(
                    status_code=500, message=f"llama.cpp failed: {type(exc).__name__}: {exc}"
                ) from exc
            return result, time.perf_counter() - started

    @staticmethod
    def _on_server(path: Path, messages: list, params: dict, timeout: float) -> tuple[dict, float]:
        from scale.models.llama_server import SERVERS, ServerError

        if "response_format" in params:  # llama-server takes the schema as json_schema
            params = dict(params)
            fmt = params.pop("response_format") or {}
            if fmt.get("schema"):
                params["json_schema"] = fmt["schema"]
        server = SERVERS.get(path, n_ctx=int(os.environ.get("SCALE_LOCAL_N_CTX", DEFAULT_N_CTX)))
        started = time.perf_counter()
        try:
            result = server.complete(messages, params, timeout)
        except ServerError as exc:
            raise CustomLLMError(status_code=503, message=str(exc)) from None
        except OSError as exc:
            raise CustomLLMError(
                status_code=503, message=f"llama-server unreachable: {type(exc).__name__}: {exc}"
            ) from None
        # the server's own timing excludes time queued for a slot
        timings = result.get("timings") or {}
        busy = (timings.get("prompt_ms") or 0) + (timings.get("predicted_ms") or 0)
        return result, busy / 1000 if busy else time.perf_counter() - started


def _response(model: str, result: dict, seconds: float) -> litellm.ModelResponse:
    choice = result["choices"][0]
    usage = result.get("usage") or {}
    response = litellm.ModelResponse(
        model=model,
        choices=[
            {
                "index": 0,
                "finish_reason": choice.get("finish_reason") or "stop",
                "message": {
                    "role": "assistant",
                    "content": (choice.get("message") or {}).get("content") or "",
                },
                "logprobs": choice.get("logprobs"),
            }
        ],
        usage={
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0),
        },
    )
    response._hidden_params["local_seconds"] = seconds
    timings = result.get("timings") or {}
    if "cache_n" in timings:
        response._hidden_params["prompt_evaluated"] = timings.get("prompt_n", 0)
    return response


def register() -> None:
    """Register the ``local`` provider with litellm (idempotent)."""
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": PROVIDER, "custom_handler": LlamaCppProvider()},
        ]
    custom_llm_setup()
