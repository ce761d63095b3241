"""``quantize_model``: swap a model's nn.Linear layers for weight-only quantized ones, in place."""

from __future__ import annotations

import torch
from torch import nn

from gptkit.errors import ConfigError
from gptkit.quant.int8 import Int8Linear

SCHEMES = {"int8": Int8Linear}


def quantize_model(model: nn.Module, scheme: str = "int8", dtype: torch.dtype | None = None) -> nn.Module:
    """Quantize every nn.Linear (incl. lm_head), then cast the rest of ``model`` to ``dtype`` (if given).

    A tied lm_head gets its own quantized copy; the embedding lookup table keeps its full-precision weight.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}")
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name in names:  # one at a time, so each full-precision weight is freed as soon as it is replaced
        _set_submodule(model, name, SCHEMES[scheme].from_linear(model.get_submodule(name)))
    if dtype is not None:  # int8 weights stay int8; biases, norms, embeddings and scales follow dtype
        model.to(dtype)
    model.quantization = scheme
    return model


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``name``."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)
