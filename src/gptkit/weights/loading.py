"""One entry point for loading a pretrained model from any supported source."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from gptkit.errors import ConfigError
from gptkit.memory import release_free_memory, trimming
from gptkit.model.decoder import DecoderLM
from gptkit.registry import ModelSource, SourceKind, resolve

if TYPE_CHECKING:
    from gptkit.config import GPT4Config


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """Accept torch dtypes or their names ("float32", "bf16", "auto"/None keeps the loader's default)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"auto": None, "float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
             "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}  # fmt: skip
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(names)}")
    return names[dtype]


QUANTIZE_NONE = "none"  # keep every weight in floating point (the reference path with dtype=float32)
QUANTIZE_GGUF = "gguf"  # keep a GGUF file's quantized blocks and compute on them (gptkit.quant.ggml)


def load_pretrained(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    quantize: str | None = None,
    model_class: type[DecoderLM] = DecoderLM,
) -> DecoderLM:
    """Resolve ``name_or_path`` and load the model it names (GGUF or HF safetensors) as a ``model_class``,
    in eval mode.

    With neither ``dtype`` nor ``quantize`` (the fast default): a quantized GGUF keeps its blocks and runs
    on the native kernels ("gguf"); HF safetensors load in bf16 where the CPU multiplies bf16 natively,
    else float32. ``dtype="float32"`` alone (or ``quantize="none"``) is the exact float32 reference path.
    ``quantize`` "int8", "int4", "int4-g64", "int4-g128" re-quantize the linears (see gptkit.quant).
    Tensors are read one at a time and cast or quantized at once, so memory stays near the final model's.
    """
    source = resolve(name_or_path)
    config, shapes, read = open_weights(source)  # every file, name and shape checked; nothing read yet
    blocks = getattr(read, "blocks", None)  # GGUF only: a parameter's quantized blocks
    dtype, quantize = choose_path(resolve_dtype(dtype), quantize, blocks is not None)
    if quantize == QUANTIZE_GGUF:
        model = ggml_model(model_class, config, shapes, trimming(read), blocks, dtype)
    else:
        model = stream_model(model_class, config, shapes, trimming(read), dtype, quantize)
    del read, blocks  # the last references to the open files (quantized blocks keep their own)
    release_free_memory()
    if device is not None:
        model = model.to(device)
    model.source = source
    return model


def choose_path(
    dtype: torch.dtype | None, quantize: str | None, is_gguf: bool
) -> tuple[torch.dtype, str | None]:
    """(dtype of the floating-point tensors, quantization scheme or None) for the requested options."""
    from gptkit.quant.ggml import dense_dtype

    if quantize == QUANTIZE_NONE:
        return dtype or torch.float32, None
    if quantize == QUANTIZE_GGUF and not is_gguf:
        raise ConfigError('quantize="gguf" keeps a GGUF file\'s blocks; this model is not a GGUF file')
    if quantize is not None:
        return dtype or torch.float32, quantize
    if dtype is not None:
        return dtype, None
    return (torch.float32, QUANTIZE_GGUF) if is_gguf else (dense_dtype(), None)


def open_weights(source: ModelSource):
    """(config, our parameter shapes, read(name) -> one tensor) of a GGUF file or HF directory."""
    if source.kind is SourceKind.GGUF:
        from gptkit.weights.gguf_io import open_gguf_state

        return open_gguf_state(source.path)
    from gptkit.weights.safetensors_io import open_hf_state

    return open_hf_state(source.path)


def stream_model(
    model_class: type[DecoderLM],
    config: GPT4Config,
    shapes: dict[str, tuple[int, ...]],
    read: Callable[[str], torch.Tensor],
    dtype: torch.dtype,
    quantize: str | None = None,
) -> DecoderLM:
    """The eval-mode model whose parameters are ``read(name)`` in ``dtype``, reading one at a time.

    The same model as ``from_state_dict`` on every tensor, then ``quantize_model(model, quantize)``; but
    each nn.Linear is quantized as soon as its weight is read, and the scheme is checked before any read.
    """
    placeholders = {name: torch.empty(shape, dtype=dtype, device="meta") for name, shape in shapes.items()}
    skeleton = model_class.from_state_dict(config, placeholders, dtype=dtype)  # checks names and shapes
    if quantize is None:
        return model_class.from_state_dict(config, {n: read(n).to(dtype) for n in shapes}, dtype=dtype)
    from gptkit.quant.swap import check_scheme, quantized_linears, set_submodule

    group_size = check_scheme(skeleton, quantize)
    kept = _used_outside_linears(skeleton)
    state: dict[str, torch.Tensor] = {}

    def fetch(name: str) -> torch.Tensor:
        """One parameter in ``dtype``; ``state`` keeps it only if an unquantized module uses it too."""
        tensor = state[name] if name in state else read(name).to(dtype)
        state[name] = tensor if name in kept else placeholders[name]
        return tensor

    quantized = dict(quantized_linears(skeleton, group_size, fetch))
    state |= {name: read(name).to(dtype) for name in shapes if name not in state}
    model = model_class.from_state_dict(config, state, dtype=dtype)  # its linears hold meta weights
    for name, module in quantized.items():
        set_submodule(model, name, module)
    model.quantization = quantize
    return model


def ggml_model(
    model_class: type[DecoderLM],
    config: GPT4Config,
    shapes,
    read: Callable,
    blocks: Callable,
    dtype: torch.dtype,
) -> DecoderLM:
    """The model with every linear (and the token embedding) whose GGUF tensors are quantized kept as
    ggml blocks (GGMLLinear / GGMLEmbedding); float tensors and other layers read in ``dtype``."""
    from gptkit.quant.ggml import KERNEL_TYPES, GGMLEmbedding, GGMLLinear
    from gptkit.quant.swap import linears, set_submodule

    placeholders = {name: torch.empty(shape, dtype=dtype, device="meta") for name, shape in shapes.items()}
    skeleton = model_class.from_state_dict(config, placeholders, dtype=dtype)  # checks names and shapes
    names = {id(p): name for name, p in skeleton.named_parameters()}
    wanted = {names[id(linear.weight)] for _, linear in linears(skeleton)} | {"embed.weight"}
    weights = {}  # parameter name -> GGMLWeight, each built (and repacked) once, shared by tied users
    for name in sorted(wanted, key=list(shapes).index):  # the file's order: pages are read front to back
        stored = blocks(name)
        if stored is not None and stored.ggml_type in KERNEL_TYPES:
            weights[name] = _ggml_weight(stored, shapes[name])
    replaced: dict[str, nn.Module] = {}
    for name, linear in linears(skeleton):
        weight = weights.get(names[id(linear.weight)])
        if weight is not None:
            bias = None if linear.bias is None else read(names[id(linear.bias)]).to(dtype)
            replaced[name] = GGMLLinear(weight, bias)
    if "embed.weight" in weights:
        replaced["embed"] = GGMLEmbedding(weights["embed.weight"], dtype)
    covered = set(weights) | {f"{name}.bias" for name in replaced}
    state = {n: placeholders[n] if n in covered else read(n).to(dtype) for n in shapes}
    model = model_class.from_state_dict(config, state, dtype=dtype)
    for name, module in replaced.items():
        set_submodule(model, name, module)
    model.quantization = "gguf"
    return model


def _ggml_weight(stored, shape: tuple[int, int]):
    """A GGMLWeight over a parameter's StoredRows, repacked for the kernels where they have a layout (the
    file's pages under it are then handed back to the OS)."""
    from gptkit.quant.ggml import GGMLWeight, pack

    data, packed = pack(stored)
    if packed:
        stored.release()
    return GGMLWeight(data, stored.ggml_type, shape, packed)


def _used_outside_linears(model: nn.Module) -> set[str]:
    """Names of the parameters that a module other than an nn.Linear uses (a tied lm_head's embedding)."""
    names = {id(p): name for name, p in model.named_parameters()}
    return {
        names[id(p)]
        for module in model.modules()
        if not isinstance(module, nn.Linear)
        for p in module.parameters(recurse=False)
    }


def load_config(name_or_path: str | Path):
    """The GPT4Config of a model without reading its weights: (config, source)."""
    source = resolve(name_or_path)
    if source.kind is SourceKind.GGUF:
        from gptkit.weights.gguf_config import config_from_gguf
        from gptkit.weights.gguf_file import read_header

        header = read_header(source.path)
        return config_from_gguf(header.metadata, {t.name for t in header.tensors}), source
    from gptkit.weights.safetensors_io import read_hf_config

    return read_hf_config(source.path), source


def check_model(name_or_path: str | Path):
    """(config, source) after checking the whole model as loading would, without reading tensor data:
    every tensor's type, shape, byte size and place in the file, no duplicates, none missing or unknown."""
    source = resolve(name_or_path)
    config, _, _ = open_weights(source)
    return config, source
