"""GPT4LMHeadModel: the pure decoder (gptkit.model.decoder) with its Hugging Face-style face.

``from_pretrained`` and ``save_pretrained`` go through gptkit.weights, ``generate`` through
gptkit.generation; the network itself knows neither files nor generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gptkit.generation import generate
from gptkit.model.decoder import DecoderLM
from gptkit.registry import DEFAULT_MODEL
from gptkit.weights.adapters import load_adapter
from gptkit.weights.loading import load_pretrained
from gptkit.weights.safetensors_io import save_pretrained


class GPT4LMHeadModel(DecoderLM):
    """A Generative Pre-trained Transformer with a language-modelling head, configured by GPT4Config."""

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        *,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        quantize: str | None = None,
        lora: str | Path | None = None,
    ) -> GPT4LMHeadModel:
        """Load a registered name, a .gguf file or a Hugging Face directory; ``quantize`` is optional:
        "gguf", "none", "int8", "int4", "int4-g64" or "int4-g128" (see gptkit.weights.loading).

        ``lora``: a LoRA adapter directory (PEFT's layout, or ``gptkit export --adapter``), merged into float
        linear weights and applied beside quantized ones (gptkit.weights.adapters.load_adapter)."""
        model = load_pretrained(name_or_path, dtype=dtype, device=device, quantize=quantize, model_class=cls)
        if lora is not None:
            load_adapter(model, lora)
        return model

    def save_pretrained(self, directory: str | Path) -> None:
        """Write a Hugging Face directory (config.json + model.safetensors) that transformers can load."""
        save_pretrained(self, directory)

    def generate(self, input_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """Generate continuations with transformers' semantics; see gptkit.generation.generate."""
        return generate(self, input_ids, **kwargs)
