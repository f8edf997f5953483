"""Model files: checksums of packaged and user-supplied weights."""

from __future__ import annotations


def test_model_checksums_for_packaged_and_file_models(tmp_path):
    import hashlib

    from scale.models.packaged import PACKAGED_MODELS, model_sha256

    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    assert model_sha256(f"local/{weights}") == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert model_sha256("local/smollm2-135m") == PACKAGED_MODELS["smollm2-135m"].sha256
    assert model_sha256("openai/gpt-4o-mini") is None
    assert model_sha256(f"local/{tmp_path / 'missing.gguf'}") is None


def test_threads_asking_for_a_chunked_model_at_once_assemble_it_once(tmp_path, monkeypatch):
    """Two threads of one evaluation once wrote the same partial file and one failed."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from scale.models import packaged

    chunks = [tmp_path / f"part{i}" for i in range(3)]
    for i, chunk in enumerate(chunks):
        chunk.write_bytes(bytes([i]) * 3_000_000)
    whole = b"".join(c.read_bytes() for c in chunks)
    model = packaged.PackagedModel(
        "chunked", "a test model", "chunked.gguf", hashlib.sha256(whole).hexdigest(),
        len(whole), tuple(("pkg", c.name) for c in chunks), "chunked",
    )  # fmt: skip
    monkeypatch.setattr(packaged, "_package_file", lambda pkg, rel: tmp_path / rel)
    monkeypatch.setattr(packaged, "cache_dir", lambda: tmp_path / "cache")
    assembled = []
    real = packaged._assemble
    monkeypatch.setattr(packaged, "_assemble", lambda *a: assembled.append(1) or real(*a))
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: packaged.packaged_path(model), range(4)))
    assert len(set(paths)) == 1 and paths[0].read_bytes() == whole
    assert assembled == [1]
    assert not list((tmp_path / "cache").glob("*.partial"))
