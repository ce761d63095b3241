"""Inference engine: continuous batching of many requests over one static KV cache."""

from gptkit.engine.engine import Engine
from gptkit.engine.params import SamplingParams
from gptkit.engine.request import Completion, Event, TokenLogprob

__all__ = ["Completion", "Engine", "Event", "SamplingParams", "TokenLogprob"]
