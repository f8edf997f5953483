"""Model pools through litellm's Router: ``router/NAME`` models spread their calls over the
deployments a router file lists under ``NAME``, with its routing strategy, retries,
cooldowns and fallbacks.

The file is litellm Router's own format (YAML or JSON)::

    model_list:
      - model_name: s2
        litellm_params: {model: openai/qwen, api_base: http://10.0.0.1:8000/v1, api_key: none}
      - model_name: s2
        litellm_params: {model: openai/qwen, api_base: http://10.0.0.2:8000/v1, api_key: none}
    router_settings: {routing_strategy: least-busy, num_retries: 2, allowed_fails: 1}

DSPy calls a pool like one model: ``router/s2`` goes through a litellm custom provider that
hands the call to the Router, so token accounting and DSPy's cache work as for any model
(the cache key carries a hash of the resolved deployments, so two pools never share
answers).

A router file is treated as untrusted: litellm's ``os.environ/NAME`` references may name
only variables starting with ``SCALE_ROUTER_`` (so a file cannot send, say, an API key of
yours to a host of its choosing); they are resolved when the file is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError
from litellm.utils import custom_llm_setup

PROVIDER = "router"
ENV_PREFIX = "SCALE_ROUTER_"  # the only variables a router file may read
_ENV_REF = "os.environ/"
_PASSED = ("temperature", "top_p", "max_tokens", "stop", "seed", "logprobs", "top_logprobs",
           "response_format", "presence_penalty", "frequency_penalty", "n")  # fmt: skip


class RouterError(ValueError):
    """A router file that cannot be used; the message says why."""


class _Pools:
    """The router loaded in this process (one file at a time)."""

    def __init__(self) -> None:
        self.router: Any = None
        self.path: Path | None = None
        self.digest = ""
        self.names: set[str] = set()
        self._lock = threading.Lock()

    def load(self, path: str | Path) -> str:
        """Load ``path`` (YAML or JSON) and return its short hash."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RouterError(f"{path}: cannot read the router file ({exc})") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                config = yaml.safe_load(text)
            else:
                config = json.loads(text)
        except Exception as exc:  # one line: YAML's messages span several
            reason = " ".join(str(exc).split())[:300]
            raise RouterError(f"{path}: not a readable router file ({reason})") from None
        model_list = config.get("model_list") if isinstance(config, dict) else None
        if not isinstance(model_list, list) or not model_list:
            raise RouterError(f"{path}: needs a non-empty model_list (litellm Router's format)")
        names = set()
        for i, entry in enumerate(model_list):
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("model_name"), str)
                and isinstance(entry.get("litellm_params"), dict)
                and isinstance(entry["litellm_params"].get("model"), str)
            ):
                raise RouterError(
                    f"{path}: model_list[{i}] needs model_name and litellm_params.model"
                )
            names.add(entry["model_name"])
        settings = config.get("router_settings") or {}
        if not isinstance(settings, dict):
            raise RouterError(f"{path}: router_settings must be a mapping")
        model_list = _resolved(model_list, path)
        try:
            router = litellm.Router(model_list=model_list, **settings)
        except Exception as exc:
            raise RouterError(f"{path}: litellm's Router refused it ({exc})") from None
        with self._lock:
            self.router, self.path, self.names = router, path, names
            resolved = json.dumps([model_list, settings], sort_keys=True, default=str)
            self.digest = hashlib.sha256(resolved.encode()).hexdigest()[:16]
        register()
        return self.digest

    def check(self, model: str) -> None:
        name = model.removeprefix(f"{PROVIDER}/")
        if self.router is None:
            raise RouterError(f"{model} names a model pool: pass --router FILE (litellm format)")
        if name not in self.names:
            raise RouterError(
                f"{model}: the router file {self.path} has no pool {name!r} "
                f"(it has {', '.join(sorted(self.names))})"
            )


def _resolved(value: Any, path: Path) -> Any:
    """``value`` with its ``os.environ/NAME`` references replaced by the variables' values;
    a name outside ``SCALE_ROUTER_*``, or unset, is refused."""
    if isinstance(value, dict):
        return {k: _resolved(v, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v, path) for v in value]
    if isinstance(value, str) and value.startswith(_ENV_REF):
        name = value.removeprefix(_ENV_REF)
        if not name.startswith(ENV_PREFIX):
            raise RouterError(
                f"{path}: {value} reads a variable outside {ENV_PREFIX}*: a router file may "
                f"read only those (e.g. export {ENV_PREFIX}KEY=... and use {_ENV_REF}"
                f"{ENV_PREFIX}KEY)"
            )
        if name not in os.environ:
            raise RouterError(f"{path}: {value} is not set")
        return os.environ[name]
    return value


POOLS = _Pools()


def load_router(path: str | Path) -> str:
    """Use the pools of ``path`` for ``router/NAME`` models; returns the file's hash."""
    return POOLS.load(path)


class RouterProvider(CustomLLM):
    """litellm handler for ``router/NAME``: the call goes to the Router's pool NAME."""

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
        if POOLS.router is None or name not in POOLS.names:
            raise CustomLLMError(status_code=400, message=f"no model pool {name!r} is loaded")
        params = {k: v for k, v in optional_params.items() if k in _PASSED and v is not None}
        timeout = kwargs.get("timeout") or optional_params.get("timeout")
        try:
            response = POOLS.router.completion(
                model=name, messages=messages, timeout=timeout, **params
            )
        except Exception as exc:
            status = getattr(exc, "status_code", None) or 503
            raise CustomLLMError(
                status_code=int(status), message=f"pool {name}: {type(exc).__name__}: {exc}"
            ) from None
        response.model = model
        return response


def register() -> None:
    """Register the ``router`` provider with litellm (idempotent)."""
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": PROVIDER, "custom_handler": RouterProvider()},
        ]
    custom_llm_setup()
