"""``quantize_model``: swap a model's nn.Linear layers for weight-only quantized ones, in place.

``quantized_linears`` builds the replacements one at a time from any source of full-precision tensors, so
a loader can quantize each weight as it is read (gptkit.weights.loading) instead of building the fp32 model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
    group_size = check_scheme(model, scheme)  # refuse before changing anything
    # one at a time, so each full-precision weight is freed as soon as it is replaced
    for name, module in quantized_linears(model, group_size, model.get_parameter):
        set_submodule(model, name, module)
    if dtype is not None:  # quantized weights stay integer; biases, norms, embeddings and scales follow dtype
        model.to(dtype)
    model.quantization = scheme
    return model


def check_scheme(model: nn.Module, scheme: str) -> int | None:
    """The int4 group size of ``scheme`` (None: int8), refusing unknown schemes and linears it cannot take.

    Reads only shapes, so ``model`` may live on the meta device.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}")
    group_size, head = SCHEMES[scheme], getattr(model, "lm_head", None)
    if group_size is not None:
        for _, linear in linears(model):
            if linear is not head:
                check_group_size(linear.in_features, group_size)
    return group_size


def quantized_linears(
    model: nn.Module, group_size: int | None, fetch: Callable[[str], torch.Tensor]
) -> Iterator[tuple[str, nn.Module]]:
    """(module name, quantized replacement) for every nn.Linear of ``model``, built one at a time.

    ``fetch(parameter name)`` gives each weight and bias in full precision (the model may be on the meta
    device). Linears come in parameter order, so a head tied to the embedding comes first. The lm_head is
    int8, the others int4 with ``group_size`` (None: int8); check_scheme validates it beforehand.
    """
    order = {id(p): i for i, p in enumerate(model.parameters())}
    names = {id(p): name for name, p in model.named_parameters()}
    head = getattr(model, "lm_head", None)
    for name, linear in sorted(linears(model), key=lambda item: order[id(item[1].weight)]):
        weight = fetch(names[id(linear.weight)])
        bias = None if linear.bias is None else fetch(names[id(linear.bias)])
        holder = _as_linear(weight, bias)
        del weight, bias  # the holder keeps the only references, dropped before the next fetch
        if group_size is None or linear is head:
            module = Int8Linear.from_linear(holder)
        else:
            module = Int4Linear.from_linear(holder, group_size)
        del holder
        yield name, module


def linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every nn.Linear of ``model`` with its dotted name."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _as_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An nn.Linear around existing tensors (no copy, no initialisation)."""
    with torch.device("meta"):
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    linear.weight = nn.Parameter(weight.detach(), requires_grad=False)
    if bias is not None:
        linear.bias = nn.Parameter(bias.detach(), requires_grad=False)
    return linear


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``name``."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)
