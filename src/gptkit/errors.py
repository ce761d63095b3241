"""Typed exceptions: every failure a user can cause names the problem (and the argument, in ``param``)."""

from __future__ import annotations


class GPTKitError(Exception):
    """Base class for all gptkit errors; ``param`` names the offending argument when one is to blame."""

    def __init__(self, *args: object, param: str | None = None) -> None:
        super().__init__(*args)
        self.param = param


class ModelNotFoundError(GPTKitError, FileNotFoundError):
    """A model name or path does not resolve to loadable files."""


class ConfigError(GPTKitError, ValueError):
    """A configuration is invalid or uses an unsupported feature."""


class WeightsError(GPTKitError, ValueError):
    """A weights file is corrupt, truncated, or disagrees with the config."""


class ChecksumError(WeightsError):
    """A registered model file does not have the sha256 the registry records (damaged or replaced)."""


class AdapterError(WeightsError):
    """A LoRA adapter cannot be read, or its rank, targets or shapes do not fit the model."""


class UnsupportedTensorTypeError(WeightsError):
    """A GGUF tensor uses a quantization type gptkit cannot read."""


class TokenizerError(GPTKitError, ValueError):
    """A tokenizer cannot be loaded or was given invalid input."""


class GenerationError(GPTKitError, ValueError):
    """Invalid generation arguments (sampling parameters, lengths)."""


class EmbeddingError(GPTKitError, ValueError):
    """Invalid embedding input or options (empty input, bad token ids, unsupported dimensions)."""


class ContextLengthError(GenerationError):
    """A prompt (plus requested tokens) does not fit the model's context window."""
