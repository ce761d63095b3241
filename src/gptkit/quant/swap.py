"""``quantize_model``: swap a model's nn.Linear layers for weight-only quantized ones, in place."""

from __future__ import annotations

import torch
from torch import nn

from gptkit.errors import ConfigError
from gptkit.quant.int4 import Int4Linear, check_group_size
from gptkit.quant.int8 import Int8Linear

# scheme -> int4 group size of the block linears (None: int8). The lm_head is int8 in every scheme: a 4-bit
# head costs SmolLM2 4% perplexity and 15% of its greedy tokens (docs/performance.md).
SCHEMES: dict[str, int | None] = {"int8": None, "int4": 32, "int4-g64": 64, "int4-g128": 128}


def quantize_model(model: nn.Module, scheme: str = "int8", dtype: torch.dtype | None = None) -> nn.Module:
    """Quantize every nn.Linear (incl. lm_head), then cast the rest of ``model`` to ``dtype`` (if given).

    A tied lm_head gets its own quantized copy; the embedding lookup table keeps its full-precision weight.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}")
    group_size, head = SCHEMES[scheme], getattr(model, "lm_head", None)
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if group_size is not None:  # refuse before changing anything
        for name in names:
            if model.get_submodule(name) is not head:
                check_group_size(model.get_submodule(name).in_features, group_size)
    for name in names:  # one at a time, so each full-precision weight is freed as soon as it is replaced
        linear = model.get_submodule(name)
        if group_size is None or linear is head:
            _set_submodule(model, name, Int8Linear.from_linear(linear))
        else:
            _set_submodule(model, name, Int4Linear.from_linear(linear, group_size))
    if dtype is not None:  # quantized weights stay integer; biases, norms, embeddings and scales follow dtype
        model.to(dtype)
    model.quantization = scheme
    return model


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``name``."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)
