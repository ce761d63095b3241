"""gptkit: a readable, fast Generative Pre-trained Transformer stack on PyTorch."""

import os

# OpenMP threads that sleep between the many short parallel regions of a decode step wake up slower
# than a small matmul runs: spinning a little longer made SmolLM2's block matmuls 1.5x faster on 2
# threads (docs/performance.md). Read when torch loads OpenMP, so only if gptkit is imported first.
os.environ.setdefault("GOMP_SPINCOUNT", "10000000")

from gptkit._lazy import lazy_getattr  # noqa: E402
from gptkit.config import GPT4Config, preset
from gptkit.errors import (
    AdapterError,
    ChecksumError,
    ConfigError,
    ContextLengthError,
    EmbeddingError,
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
    "embed",
    "load",
    "pipeline",
    "preset",
    "GPTKitError",
    "ChecksumError",
    "ConfigError",
    "AdapterError",
    "ContextLengthError",
    "EmbeddingError",
    "GenerationError",
    "ModelNotFoundError",
    "TokenizerError",
    "UnsupportedTensorTypeError",
    "WeightsError",
]


# Imported lazily so `import gptkit` stays fast and tokenizer-only users need not load the model code.
__getattr__ = lazy_getattr(
    __name__,
    {
        "GPT4LMHeadModel": "gptkit.modeling",
        "GPT4Tokenizer": "gptkit.tokenizer",
        "embed": "gptkit.embeddings",
        "load": "gptkit.loader",
        "pipeline": "gptkit.tasks.factory",
    },
)
