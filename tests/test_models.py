"""Model files: checksums of packaged and user-supplied weights."""

from __future__ import annotations


def test_model_checksums_for_packaged_and_file_models(tmp_path):
    import hashlib

    from scale.packaged import PACKAGED_MODELS, model_sha256

    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    assert model_sha256(f"local/{weights}") == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert model_sha256("local/smollm2-135m") == PACKAGED_MODELS["smollm2-135m"].sha256
    assert model_sha256("openai/gpt-4o-mini") is None
    assert model_sha256(f"local/{tmp_path / 'missing.gguf'}") is None
