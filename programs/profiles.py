"""System profiles: how System 1 (fast) and System 2 (deliberate) call a model.

A profile is a compute level: ``direct`` (answer only), ``brief`` (reason in a few lines
and write the calculation, greedy, a short budget: the default System 1), ``reasoning``
(step by step, a larger budget: the default System 2) or ``program`` (a SymPy program run
in the OS sandbox prints the answer), optionally with self-consistency
(``samples`` > 1: sample until the stop rule is satisfied, at most ``samples`` times, and
take the majority answer).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import dspy

from scale.models import local
from scale.models.adapter import ADAPTERS, default_adapter, make_adapter
from scale.models.lm import (
    DEFAULT_MODEL,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    AccountedLM,
    check_model,
    make_lm,
)
from scale.programs.stopping import STOP_KINDS, StopKind, StopRule

KINDS = ("direct", "brief", "reasoning", "program")
MAX_TOKENS = {"direct": 64, "brief": 384, "reasoning": 1024, "program": 512}
TOKEN_CAP = 32_768  # no profile may ask for more per call


@dataclass
class SystemProfile:
    """A model plus the way it is asked: compute level (``kind``), token budget, greedy
    temperature, an optional thinking switch for hybrid models (sent as
    ``chat_template_kwargs.enable_thinking``), self-consistency (``samples`` is the cap,
    ``stop`` the rule: ``fixed``, ``adaptive`` at ``confidence``, ``window`` of ``window``)
    the adapter that renders prompts (None: native for ``local/`` models, DSPy's chat
    format otherwise), and whether greedy calls ask for token logprobs, kept with each
    sample (``logprobs``: a recording of them then serves the confidence estimators).
    A ``local/`` model runs on ``runtime`` (None: the process default, resolved once here,
    see ``scale.models.local``)."""

    model: str = DEFAULT_MODEL
    kind: Literal["direct", "brief", "reasoning", "program"] = "reasoning"
    max_tokens: int | None = None  # None: the kind's default (MAX_TOKENS)
    temperature: float = 0.0
    thinking: bool | None = None
    samples: int = 1
    stop: StopKind = "fixed"
    confidence: float = 0.95
    window: int = 3
    greedy_first: bool = False
    sample_temperature: float = 0.7
    adapter: str | None = None
    logprobs: bool = False
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    runtime: str | None = None
    _lm: AccountedLM | None = field(default=None, init=False, repr=False, compare=False)

    def makes_same_calls(self, other: SystemProfile) -> bool:
        """Whether ``other`` asks exactly as this profile does (same model, level, budget,
        temperatures and format), so either's replies serve the other."""
        keys = ("model", "kind", "max_tokens", "temperature", "thinking", "sample_temperature")
        keys += ("adapter", "api_base")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.max_tokens is None:
            self.max_tokens = MAX_TOKENS[self.kind]
        if not 1 <= self.max_tokens <= TOKEN_CAP:
            raise ValueError(f"max_tokens must be in 1..{TOKEN_CAP}, got {self.max_tokens}")
        for name in ("temperature", "sample_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= 2):
                raise ValueError(f"{name} must be in [0, 2], got {value}")
        if self.stop not in STOP_KINDS:
            raise ValueError(f"stop must be one of {STOP_KINDS}, got {self.stop!r}")
        if self.adapter is not None and self.adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {ADAPTERS}, got {self.adapter!r}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout}")
        _ = self.stop_rule  # raises on a bad samples, confidence or window
        if self.model.startswith(f"{local.PROVIDER}/"):
            self.runtime = local.check_runtime(self.runtime or local.runtime_name())
        elif self.runtime is not None:
            raise ValueError(f"runtime is for local/ models; {self.model} is not one")
        check_model(self.model, self.api_base, self.runtime)

    @property
    def stop_rule(self) -> StopRule:
        """The self-consistency rule (cap ``samples``)."""
        window = min(self.window, self.samples)
        return StopRule(self.stop, self.samples, self.confidence, window)

    @property
    def lm(self) -> AccountedLM:
        """The profile's LM, built on first use."""
        if self._lm is None:
            extra: dict[str, Any] = {}
            if self.thinking is not None:
                extra["extra_body"] = {"chat_template_kwargs": {"enable_thinking": self.thinking}}
            self._lm = make_lm(
                self.model,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                api_base=self.api_base,
                api_key=self.api_key,
                timeout=self.timeout,
                num_retries=self.retries,
                runtime=self.runtime,
                **extra,
            )
        return self._lm

    @property
    def adapter_name(self) -> str:
        """The adapter this profile renders prompts with."""
        return self.adapter or default_adapter(self.model)

    def context(self) -> contextlib.AbstractContextManager[None]:
        """A ``dspy.context`` calling this profile's LM through its adapter (a caller's
        configured adapter is used when the profile names none)."""
        if self.adapter is None and dspy.settings.adapter is not None:
            return dspy.context(lm=self.lm)
        return dspy.context(lm=self.lm, adapter=make_adapter(self.adapter_name))

    def describe(self) -> dict[str, Any]:
        """The profile as plain data (for logs and saved programs); no key, and
        ``logprobs`` only when asked for (it changes no reply, and results files written
        before it existed stay resumable); no runtime (how it runs, not what it asks)."""
        left_out = ("api_key", "runtime") if self.logprobs else ("api_key", "runtime", "logprobs")
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.init and f.name not in left_out
        } | {"adapter": self.adapter_name}


def system1(model: str = DEFAULT_MODEL, **overrides: Any) -> SystemProfile:
    """Default System 1: brief reasoning with its calculation, greedy, a short budget."""
    return SystemProfile(model=model, **{"kind": "brief", **overrides})


def system2(model: str = DEFAULT_MODEL, **overrides: Any) -> SystemProfile:
    """Default System 2: step-by-step reasoning, a larger budget, greedy."""
    return SystemProfile(model=model, **{"kind": "reasoning", **overrides})
