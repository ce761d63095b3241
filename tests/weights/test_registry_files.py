"""User-supplied registry entries: found in the models directory, checksum-verified, listed by `gptkit models`."""

from __future__ import annotations

import pytest

from gptkit import registry
from gptkit.checksums import file_sha256
from gptkit.cli import main
from gptkit.errors import ChecksumError, ModelNotFoundError
from gptkit.registry import REGISTRY, RegistryEntry, resolve


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTKIT_MODELS_DIR", str(tmp_path))
    return tmp_path


def test_family_entries_name_a_file_a_checksum_and_a_source():
    user_supplied = [e for e in REGISTRY.values() if e.package is None]
    assert {"qwen3-0.6b", "gemma-3-270m-it", "smollm3-3b"} <= {e.name for e in user_supplied}
    for entry in user_supplied:
        assert entry.filename.endswith(".gguf") and len(entry.sha256) == 64
        assert entry.url.startswith("https://") and entry.url.endswith(entry.filename)


def test_missing_file_says_where_to_get_it(models_dir):
    with pytest.raises(ModelNotFoundError, match=r"download https://\S+Qwen3-0.6B-Q8_0.gguf and save it as"):
        resolve("qwen3-0.6b")


def test_supplied_file_is_verified_and_listed(models_dir, monkeypatch, capsys, tmp_path_factory):
    path = models_dir / "tiny.gguf"
    path.write_bytes(b"GGUF not really")
    entry = RegistryEntry(
        "tiny-test", "a test file", None, "tiny.gguf", file_sha256(path), url="https://x/tiny.gguf"
    )
    monkeypatch.setitem(REGISTRY, "tiny-test", entry)
    assert resolve("tiny-test").path == path
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"installed: {path}" in out and "not installed: download https://" in out
    monkeypatch.setitem(REGISTRY, "tiny-test", RegistryEntry("tiny-test", "", None, "tiny.gguf", "0" * 64))
    with pytest.raises(ChecksumError):
        resolve("tiny-test")
    assert registry.bundled_path(REGISTRY["qwen3-0.6b"]) is None
