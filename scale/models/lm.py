"""Model strings to ``dspy.LM``s, and the accounting of every LM call they make.

Every LM built here is an ``AccountedLM``: each call it finishes (cache hits included, with
the token counts of the original call) is appended to the ``Ledger`` active in the calling
context, labelled with the stage and system the program declared with ``label``.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import dspy
import litellm

from scale.models import buildcheck, local, packaged, patches, pools
from scale.models.adapter import record_finish
from scale.models.patches import check_cancelled, usage_numbers

litellm.suppress_debug_info = True  # errors are reported once, by us
patches.apply()


DEFAULT_MODEL = "local/qwen2.5-coder-1.5b"
TINY_MODEL = "local/smollm2-135m"
DEFAULT_TIMEOUT = 300.0  # seconds one LM call may take
DEFAULT_RETRIES = 3


@dataclass(frozen=True)
class CallRecord:
    """One finished LM call."""

    model: str
    stage: str
    system: int | None
    step: int | None
    prompt_tokens: int
    completion_tokens: int
    cached: bool  # served without running a model: DSPy's cache, or the recorded runtime
    seconds: float  # model time (a recorded call's recorded time; 0 for a cache hit)
    prompt_evaluated: int | None = None  # prompt tokens the server really computed (prefix cache)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Usage:
    """Token and call totals of one unit of work, split by stage and by system (``"1"``,
    ``"2"``). Cache hits count what the original call cost; ``spent_tokens`` counts only
    calls that reached a model."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    lm_calls: int = 0
    cached_calls: int = 0
    spent_tokens: int = 0
    lm_seconds: float = 0.0
    seconds: float = 0.0
    prompt_evaluated: int | None = None  # of the uncached calls' prompts, where the server said
    by_stage: dict[str, dict[str, int]] = field(default_factory=dict)
    by_system: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, records: list[CallRecord], seconds: float = 0.0) -> Usage:
        def bucket(rs: list[CallRecord]) -> dict[str, int]:
            return {
                "prompt_tokens": sum(r.prompt_tokens for r in rs),
                "completion_tokens": sum(r.completion_tokens for r in rs),
                "total_tokens": sum(r.total_tokens for r in rs),
                "lm_calls": len(rs),
            }

        total = bucket(records)
        known = [r for r in records if r.prompt_evaluated is not None]
        return cls(
            **total,
            cached_calls=sum(r.cached for r in records),
            spent_tokens=sum(r.total_tokens for r in records if not r.cached),
            lm_seconds=round(sum(r.seconds for r in records), 3),
            seconds=round(seconds, 3),
            prompt_evaluated=sum(r.prompt_evaluated for r in known) if known else None,
            by_stage={
                s: bucket([r for r in records if r.stage == s])
                for s in sorted({r.stage for r in records})
            },
            by_system={
                str(k): bucket([r for r in records if r.system == k])
                for k in sorted({r.system for r in records if r.system is not None})
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ledger:
    """The LM calls of one unit of work (a problem, a sweep); safe to share between threads."""

    records: list[CallRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self.records.append(record)

    def snapshot(self) -> list[CallRecord]:
        with self._lock:
            return list(self.records)

    def usage(self, seconds: float = 0.0) -> Usage:
        return Usage.of(self.snapshot(), seconds)

    def usage_by_model(self) -> dict[str, dict[str, int]]:
        """Token totals per model string, in DSPy's ``get_lm_usage()`` shape."""
        records = self.snapshot()
        return {
            model: {
                "prompt_tokens": sum(r.prompt_tokens for r in mine),
                "completion_tokens": sum(r.completion_tokens for r in mine),
                "total_tokens": sum(r.total_tokens for r in mine),
            }
            for model in sorted({r.model for r in records})
            for mine in [[r for r in records if r.model == model]]
        }


_ledger: contextvars.ContextVar[Ledger | None] = contextvars.ContextVar("ledger", default=None)
_label: contextvars.ContextVar[tuple[str, int | None, int | None]] = contextvars.ContextVar(
    "label", default=("other", None, None)
)


@contextlib.contextmanager
def track(ledger: Ledger | None = None) -> Iterator[Ledger]:
    """Record the LM calls made inside the block into ``ledger`` (a new one by default)."""
    ledger = ledger if ledger is not None else Ledger()
    token = _ledger.set(ledger)
    try:
        yield ledger
    finally:
        _ledger.reset(token)


def current_ledger() -> Ledger | None:
    """The ledger recording the calls of the current context, if any."""
    return _ledger.get()


@contextlib.contextmanager
def label(
    stage: str | None = None, system: int | None = None, step: int | None = None
) -> Iterator[None]:
    """Attribute the LM calls made inside the block to ``stage`` (and ``system``, ``step``).
    Labels nest: an inner stage refines the outer one (``gate/assess``), and an inner label
    that leaves ``system`` or ``step`` unset keeps the outer value."""
    outer_stage, outer_system, outer_step = _label.get()
    if stage is None:
        stage = outer_stage
    elif outer_stage != "other":
        stage = f"{outer_stage}/{stage}"
    token = _label.set(
        (stage, outer_system if system is None else system, outer_step if step is None else step)
    )
    try:
        yield
    finally:
        _label.reset(token)


class AccountedLM(dspy.LM):
    """A ``dspy.LM`` whose finished calls land in the active ``Ledger``, and which makes no
    call once its work is cancelled (``cancellable``)."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        check_cancelled()
        return super().forward(*args, **kwargs)

    def update_history(self, entry: dict[str, Any]) -> None:
        super().update_history(entry)
        response = entry.get("response")
        record_finish(response)
        ledger = _ledger.get()
        if ledger is None:
            return
        prompt, completion = usage_numbers(entry.get("usage"))
        hidden = getattr(response, "_hidden_params", None) or {}
        hit = "cached_usage" in hidden  # from DSPy's cache: the original usage, no model time
        if hit:
            prompt, completion = hidden["cached_usage"]
        seconds = (
            0.0
            if hit
            else float(
                hidden.get("local_seconds") or (getattr(response, "_response_ms", 0) or 0) / 1000
            )
        )
        cached = hit or bool(hidden.get("recorded"))  # a recorded call ran no model either
        stage, system, step = _label.get()
        evaluated = None if cached else hidden.get("prompt_evaluated")
        ledger.add(
            CallRecord(
                self.model, stage, system, step, prompt, completion, cached, seconds, evaluated
            )
        )


def check_model(model: str, api_base: str | None = None, runtime: str | None = None) -> None:
    """Raise ``scale.models.packaged.ModelError`` with a helpful sentence if ``model``
    cannot name a model (or is a local one given an ``api_base``)."""
    if api_base and model.startswith(f"{local.PROVIDER}/"):
        raise packaged.ModelError(
            f"{model} runs locally; --api-base is for models served elsewhere (to use a "
            "server of your own, name it as openai/MODEL with --api-base URL)"
        )
    if model.startswith(f"{pools.PROVIDER}/"):
        pools.POOLS.check(model)
        return
    if not model or "/" not in model:
        raise packaged.ModelError(
            f"Model {model!r} needs a provider prefix, e.g. {DEFAULT_MODEL}, openai/gpt-4o-mini, "
            "ollama_chat/qwen3"
        )
    if model.startswith(f"{local.PROVIDER}/"):
        runtime = runtime or local.runtime_name()
        if runtime == local.RECORDED:
            return  # no model runs: the recordings check the name on each call
        name = model.removeprefix(f"{local.PROVIDER}/")
        shipped = packaged.PACKAGED_MODELS.get(name)
        if shipped is not None:
            if not packaged.packaged_status(shipped)["installed"]:
                packaged.packaged_path(shipped)  # raises with the install command
        elif not (name.startswith("hf:") and name.endswith(".gguf")):  # hf: downloads on use
            local.resolve(name)  # a .gguf path must exist; other names raise with the accepted ones
        if runtime in local.IN_PROCESS:
            buildcheck.check_build(lambda: local.resolve(name))
        return
    try:
        litellm.get_llm_provider(model)
    except Exception:
        raise packaged.ModelError(
            f"Unknown model {model!r}: litellm knows no provider {model.split('/')[0]!r}"
        ) from None


def make_lm(
    model: str = DEFAULT_MODEL,
    *,
    temperature: float = 0.0,
    max_tokens: int = 1024,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    num_retries: int = DEFAULT_RETRIES,
    cache: bool = True,
    runtime: str | None = None,
    **kwargs: Any,
) -> AccountedLM:
    """A ``dspy.LM`` for any litellm model string or a ``local/...`` llama.cpp model.

    Temperature and max_tokens are always sent. ``api_base``/``api_key`` point at any
    OpenAI-compatible server (vLLM, llama.cpp's server, Ollama); a dummy key is used if none
    is given. Each attempt has a wall-clock deadline of ``timeout`` seconds; calls that fail
    transiently are retried ``num_retries`` times with backoff. The endpoint (``api_base``;
    ``local://RUNTIME`` for local models, ``runtime`` or the process default) is part of
    the cache key.
    """
    check_model(model, api_base, runtime)
    client: dict[str, Any] = {}
    if model.startswith(f"{local.PROVIDER}/"):
        runtime = local.check_runtime(runtime or local.runtime_name())
        if runtime != local.RECORDED:
            local.resolve(model.removeprefix(f"{local.PROVIDER}/"))  # fail (or assemble) now
        local.register()
        client = {"api_base": f"local://{runtime}"}
        # a recorded call costs nothing to repeat and carries its recorded time: no cache
        cache = cache and not runtime.startswith(local.RECORDED)
    elif model.startswith(f"{pools.PROVIDER}/"):
        client = {"api_base": f"router://{pools.POOLS.digest}"}
    elif api_base:
        client = {"api_base": api_base, "api_key": api_key or "not-needed"}
    elif api_key:
        client = {"api_key": api_key}
    return AccountedLM(
        model,
        temperature=temperature,
        max_tokens=max_tokens,
        cache=cache,
        num_retries=num_retries,
        engine="litellm",
        timeout=timeout,
        **client,
        **kwargs,
    )
