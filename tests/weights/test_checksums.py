"""Registered model files carry a sha256: a damaged copy is refused with ChecksumError, checked once per
(path, size, mtime) and remembered in the user's cache dir."""

from __future__ import annotations

import json

import pytest
from gguf import GGMLQuantizationType as Q
from test_gguf_builders import write_tiny_llama

from gptkit import ChecksumError, GPT4LMHeadModel, GPT4Tokenizer, checksums, registry
from gptkit.cli import main
from gptkit.registry import DEFAULT_MODEL, REGISTRY, RegistryEntry

PACKAGE = "gptkit_test_bundle"


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """A tiny GGUF in an importable package, registered as 'test-tiny' with its true sha256."""
    package = tmp_path / "site" / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    path = write_tiny_llama(package / "tiny.gguf", Q.Q8_0)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = RegistryEntry("test-tiny", "a tiny test model", PACKAGE, "tiny.gguf", checksums.file_sha256(path))
    monkeypatch.setitem(REGISTRY, "test-tiny", entry)
    monkeypatch.delenv("GPTKIT_CACHE_DIR", raising=False)  # conftest's; this test checks XDG_CACHE_HOME
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return path


def damage(path, at: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_bundled_file_matches_its_recorded_checksum(bundled_gguf):
    assert checksums.file_sha256(bundled_gguf) == REGISTRY[DEFAULT_MODEL].sha256


def test_a_damaged_registered_file_is_refused_by_every_loader(registered, capsys):
    GPT4LMHeadModel.from_pretrained("test-tiny")  # intact: loads
    damage(registered)  # one flipped byte in the tensor data: the header still parses
    with pytest.raises(ChecksumError, match=r"tiny\.gguf is damaged: its sha256 is [0-9a-f]{64}, but the"):
        GPT4LMHeadModel.from_pretrained("test-tiny")
    with pytest.raises(ChecksumError):
        GPT4Tokenizer.from_pretrained("test-tiny")
    assert main(["info", "--metadata-only", "test-tiny"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err


def test_a_verified_file_is_not_hashed_again_until_it_changes(registered, monkeypatch, tmp_path):
    hashed = []
    real = checksums.file_sha256
    monkeypatch.setattr(checksums, "file_sha256", lambda path: hashed.append(path) or real(path))
    registry.resolve("test-tiny")
    registry.resolve("test-tiny")
    assert len(hashed) == 1
    cache = json.loads((tmp_path / "cache" / "gptkit" / checksums.CACHE_FILE).read_text())
    assert cache[str(registered.resolve())]["sha256"] == REGISTRY["test-tiny"].sha256
    damage(registered)  # a new mtime: hashed again, and refused
    with pytest.raises(ChecksumError):
        registry.resolve("test-tiny")
    assert len(hashed) == 2


def test_an_unwritable_cache_only_costs_a_rehash(registered, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    registry.resolve("test-tiny")
    registry.resolve("test-tiny")
