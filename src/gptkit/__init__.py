"""gptkit: a readable, fast Generative Pre-trained Transformer stack on PyTorch."""

from gptkit.config import GPT4Config, preset
from gptkit.errors import (
    ConfigError,
    ContextLengthError,
    GenerationError,
    GPTKitError,
    ModelNotFoundError,
    TokenizerError,
    UnsupportedTensorTypeError,
    WeightsError,
)

__version__ = "0.1.0"

__all__ = [
    "GPT4Config",
    "GPT4LMHeadModel",
    "GPT4Tokenizer",
    "pipeline",
    "preset",
    "GPTKitError",
    "ConfigError",
    "ContextLengthError",
    "GenerationError",
    "ModelNotFoundError",
    "TokenizerError",
    "UnsupportedTensorTypeError",
    "WeightsError",
]


def __getattr__(name: str):
    # Imported lazily so `import gptkit` stays fast and tokenizer-only users need not load the model code.
    if name == "GPT4LMHeadModel":
        from gptkit.model.decoder import GPT4LMHeadModel

        return GPT4LMHeadModel
    if name == "GPT4Tokenizer":
        from gptkit.tokenizer import GPT4Tokenizer

        return GPT4Tokenizer
    if name == "pipeline":
        from gptkit.tasks import pipeline

        return pipeline
    raise AttributeError(f"module 'gptkit' has no attribute {name!r}")
