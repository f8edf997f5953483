"""Shared fixtures: a scripted model reached through the real DSPy -> litellm path."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy
import litellm
import pytest
from litellm import CustomLLM
from litellm.utils import custom_llm_setup

PROMPT_TOKENS = 11  # every scripted call reports this usage
COMPLETION_TOKENS = 7

Reply = str | Callable[[str, dict], str]


def chat(**fields: Any) -> str:
    """A reply in DSPy's ChatAdapter format."""
    parts = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(f"[[ ## {name} ## ]]\n{text}")
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


class ScriptedLM(CustomLLM):
    """A litellm provider answering by rules: the first ``(pattern, reply)`` whose regex
    matches the whole prompt wins; ``reply`` may be a function of (prompt, params)."""

    def __init__(self) -> None:
        super().__init__()
        self.rules: list[tuple[str, Reply]] = []
        self.calls: list[tuple[str, dict]] = []
        self.completion_tokens: Callable[[str], int] = lambda text: COMPLETION_TOKENS
        self.lock = threading.Lock()

    def completion(
        self,
        model,
        messages,
        api_base,
        custom_prompt_dict,
        model_response,
        print_verbose,
        encoding,
        api_key,
        logging_obj,
        optional_params,
        *a,
        **k,
    ):
        prompt = f"MODEL={model}\n" + "\n".join(str(m.get("content", "")) for m in messages)
        with self.lock:
            self.calls.append((prompt, dict(optional_params)))
        for pattern, reply in self.rules:
            if re.search(pattern, prompt, re.S):
                text = reply(prompt, optional_params) if callable(reply) else reply
                break
        else:
            raise AssertionError(f"no scripted reply for prompt:\n{prompt[-600:]}")
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": getattr(text, "finish_reason", "stop"),
            "message": {"role": "assistant", "content": text},
        }
        if isinstance(text, ScriptedText) and text.logprobs is not None:
            choice["logprobs"] = {"content": text.logprobs}
        completion = self.completion_tokens(text)
        return litellm.ModelResponse(
            model=model,
            choices=[choice],
            usage={
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": completion,
                "total_tokens": PROMPT_TOKENS + completion,
            },
        )

    def count(self, pattern: str) -> int:
        return sum(bool(re.search(pattern, p, re.S)) for p, _ in self.calls)


class ScriptedText(str):
    """A reply string that also carries token logprobs or a finish reason."""

    logprobs: list[dict] | None = None
    finish_reason: str = "stop"

    @classmethod
    def with_logprobs(cls, text: str, logprobs: list[dict]) -> ScriptedText:
        out = cls(text)
        out.logprobs = logprobs
        return out

    @classmethod
    def cut(cls, text: str) -> ScriptedText:
        """A reply that ran into max_tokens."""
        out = cls(text)
        out.finish_reason = "length"
        return out


_HANDLER = ScriptedLM()


@pytest.fixture
def scripted() -> ScriptedLM:
    """The scripted provider (models ``scripted/...``), with fresh rules and call log."""
    if not any(i.get("provider") == "scripted" for i in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": "scripted", "custom_handler": _HANDLER},
        ]
        custom_llm_setup()
    _HANDLER.rules, _HANDLER.calls = [], []
    _HANDLER.completion_tokens = lambda text: COMPLETION_TOKENS
    return _HANDLER


@pytest.fixture(autouse=True)
def fresh_cache():
    """No disk cache; a new memory cache per test."""
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    yield


@pytest.fixture(autouse=True)
def isolated_cache_dir(tmp_path_factory, monkeypatch):
    """Model assembly and other cache files go to a temporary folder."""
    monkeypatch.setenv("SCALE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
