"""Text generation with transformers' ``generate`` semantics: greedy, sampling, beam search, streaming."""

from gptkit.generation import processors
from gptkit.generation.config import GenerationConfig
from gptkit.generation.generate import generate, stream_generate
from gptkit.generation.plan import GenerateOutput
from gptkit.generation.processors import (
    apply_processors,
    build_processors,
    min_new_tokens,
    min_p,
    no_repeat_ngram,
    repetition_penalty,
    temperature,
    top_k,
    top_p,
    typical_p,
)
from gptkit.generation.stopping import truncate_at_stop
from gptkit.generation.streamers import TextIteratorStreamer, TextStreamer

__all__ = [
    "GenerateOutput",
    "GenerationConfig",
    "TextIteratorStreamer",
    "TextStreamer",
    "apply_processors",
    "build_processors",
    "generate",
    "min_new_tokens",
    "min_p",
    "no_repeat_ngram",
    "processors",
    "repetition_penalty",
    "stream_generate",
    "temperature",
    "top_k",
    "top_p",
    "truncate_at_stop",
    "typical_p",
]
