"""System profiles: how System 1 (fast) and System 2 (deliberate) call a model."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal

import dspy

from scale.adapter import ChatAdapter
from scale.lm import DEFAULT_MODEL, AccountedLM, check_model, make_lm


@dataclass
class SystemProfile:
    """A model plus the way it is asked: ``direct`` (answer only) or ``reasoning``
    (think step by step, then answer), a token budget, a temperature, an optional thinking
    switch for hybrid models (sent as ``chat_template_kwargs.enable_thinking``) and optional
    self-consistency (``samples`` > 1: majority of the samples by math equivalence)."""

    model: str = DEFAULT_MODEL
    kind: Literal["direct", "reasoning"] = "direct"
    max_tokens: int = 256
    temperature: float = 0.0
    thinking: bool | None = None
    samples: int = 1
    sample_temperature: float = 0.7
    api_base: str | None = None
    api_key: str | None = None
    timeout: float = 300.0
    retries: int = 3
    _lm: AccountedLM | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("direct", "reasoning"):
            raise ValueError(f"kind must be 'direct' or 'reasoning', got {self.kind!r}")
        if self.max_tokens < 1 or self.samples < 1:
            raise ValueError("max_tokens and samples must be positive")
        check_model(self.model)

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
                **extra,
            )
        return self._lm

    def context(self) -> contextlib.AbstractContextManager[None]:
        """A ``dspy.context`` calling this profile's LM through ``scale.adapter.ChatAdapter``
        (unless the caller configured an adapter of their own)."""
        return dspy.context(lm=self.lm, adapter=dspy.settings.adapter or ChatAdapter())

    def describe(self) -> dict[str, Any]:
        """The profile as plain data (for logs and saved programs)."""
        return {
            "model": self.model,
            "kind": self.kind,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "thinking": self.thinking,
            "samples": self.samples,
        }


def system1(model: str = DEFAULT_MODEL, **overrides: Any) -> SystemProfile:
    """Default System 1: direct answers, short budget, greedy."""
    return SystemProfile(model=model, **{"kind": "direct", "max_tokens": 256, **overrides})


def system2(model: str = DEFAULT_MODEL, **overrides: Any) -> SystemProfile:
    """Default System 2: step-by-step reasoning, larger budget, greedy."""
    return SystemProfile(model=model, **{"kind": "reasoning", "max_tokens": 1024, **overrides})
