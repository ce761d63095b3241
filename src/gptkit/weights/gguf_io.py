"""Load GGUF weights: validate the tensor table, dequantize (gptkit.quant.gguf_dequant), rename to ours.

GGUF tensors map to ours through one declarative table (``BLOCK_RULES`` / ``GLOBAL_RULES``): each of our
parameters is the row-wise concatenation of one or more GGUF tensors, after a per-tensor transform (the
Q/K un-permute of llama.cpp's converter). The quantized blocks stay reachable through
:func:`iter_gguf_tensors` for an engine that computes on them directly.
"""

from __future__ import annotations

import math
import mmap
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from gptkit.config import GPT4Config
from gptkit.errors import UnsupportedTensorTypeError, WeightsError
from gptkit.memory import drop_mapped_pages
from gptkit.model.decoder import parameter_shapes
from gptkit.quant.gguf_dequant import TORCH_DEQUANTIZERS, dequantize
from gptkit.weights.gguf_config import PERMUTED_QK_ARCHITECTURES, config_from_gguf
from gptkit.weights.gguf_file import GGUFHeader, TensorInfo, read_header

Q = GGMLQuantizationType
NOT_WEIGHTS = frozenset({Q.I8, Q.I16, Q.I32, Q.I64, Q.F64})  # integer/f64 tensors never hold weights


@dataclass(frozen=True)
class GGUFTensor:
    """One stored tensor: its ggml type, logical shape and raw (possibly quantized) bytes."""

    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]  # row-major element shape, e.g. (out_features, in_features)
    # (n_bytes,) uint8: a copy-on-write view of the file, valid while the file is unchanged
    data: torch.Tensor

    def dequantize(self) -> torch.Tensor:
        """The float32 values, shaped ``self.shape``."""
        return dequantize(self.data, self.ggml_type, self.shape)


# ---- the tensor table --------------------------------------------------------------------------------
def _tensor_type(info: TensorInfo) -> GGMLQuantizationType:
    """The ggml type of a tensor, refusing unknown ids and non-weight types."""
    try:
        qtype = Q(info.type_id)
    except ValueError:
        raise UnsupportedTensorTypeError(
            f"tensor {info.name!r} has unknown ggml type id {info.type_id}; gptkit reads "
            f"{', '.join(t.name for t in TORCH_DEQUANTIZERS)} and the other types the gguf package dequantizes"
        ) from None
    if qtype in NOT_WEIGHTS:
        raise UnsupportedTensorTypeError(
            f"tensor {info.name!r} has type {qtype.name}, which holds no weights"
        )
    return qtype


def _byte_count(info: TensorInfo, qtype: GGMLQuantizationType) -> int:
    """Bytes of a tensor's data; rows must be whole quantization blocks."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    if info.dims[0] % block_size:
        raise WeightsError(
            f"tensor {info.name!r} ({qtype.name}) has rows of {info.dims[0]} values, "
            f"not a multiple of the block size {block_size}"
        )
    return math.prod(info.dims) // block_size * type_size  # Python ints: no overflow on corrupt dims


def _checked_table(header: GGUFHeader) -> list[tuple[TensorInfo, GGMLQuantizationType, int]]:
    """(info, type, n_bytes) per tensor, after refusing duplicates, bad types and data outside the file."""
    seen: set[str] = set()
    table = []
    for info in header.tensors:
        if info.name in seen:
            raise WeightsError(f"{header.path}: duplicate tensor name {info.name!r}")
        seen.add(info.name)
        qtype = _tensor_type(info)
        n_bytes = _byte_count(info, qtype)
        if info.offset % header.alignment:
            raise WeightsError(
                f"tensor {info.name!r} data offset {info.offset} is not {header.alignment}-aligned"
            )
        if info.offset + n_bytes > header.file_size:
            raise WeightsError(
                f"{header.path} is truncated: tensor {info.name!r} needs bytes {info.offset}..{info.offset + n_bytes}"
                f" but the file has {header.file_size} bytes"
            )
        table.append((info, qtype, n_bytes))
    _check_no_overlap(header, table)
    return table


def _check_no_overlap(header: GGUFHeader, table: list[tuple[TensorInfo, GGMLQuantizationType, int]]) -> None:
    """No two tensors' data may share bytes (a corrupt offset often points into another tensor)."""
    ranges = sorted((info.offset, info.offset + n_bytes, info.name) for info, _, n_bytes in table if n_bytes)
    for (_, end, name), (start, _, following) in zip(ranges, ranges[1:], strict=False):
        if start < end:
            raise WeightsError(f"{header.path}: the data of tensors {name!r} and {following!r} overlap")


def _map_file(path: Path) -> mmap.mmap:
    """A private copy-on-write map of the file (writable, so torch.frombuffer shares it without copying)."""
    with open(path, "rb") as fh:
        buffer = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    if hasattr(mmap, "MADV_WILLNEED"):  # one large read-ahead instead of a page fault at a time
        buffer.madvise(mmap.MADV_WILLNEED)
    return buffer


def iter_gguf_tensors(path: str | Path, header: GGUFHeader | None = None) -> Iterator[GGUFTensor]:
    """Every tensor of a GGUF file as raw bytes (nothing dequantized), after validating the whole table."""
    header = header or read_header(path)
    table = _checked_table(header)
    if not table:
        return
    buffer = _map_file(header.path)
    if len(buffer) < header.file_size:
        raise WeightsError(f"{header.path} shrank while it was being read")
    for info, qtype, n_bytes in table:
        yield GGUFTensor(info.name, qtype, info.shape, _file_bytes(buffer, info.offset, n_bytes))


def _drop_file_pages(tensor: GGUFTensor | torch.Tensor) -> None:
    """Take the whole pages of the file map under ``tensor`` out of this process's memory.

    Only for tensors of iter_gguf_tensors (or views of them) that nothing wrote to: their pages are then
    the file's, and touching them again reads them back (on anonymous memory this would zero them instead).
    """
    data = tensor.data if isinstance(tensor, GGUFTensor) else tensor
    drop_mapped_pages(data.data_ptr(), data.numel() * data.element_size())


def _file_bytes(buffer: mmap.mmap, offset: int, n_bytes: int) -> torch.Tensor:
    """Bytes [offset, offset + n_bytes) of the mapped file as a uint8 tensor sharing its memory."""
    if n_bytes == 0:  # torch.frombuffer refuses empty ranges
        return torch.empty(0, dtype=torch.uint8)
    return torch.frombuffer(buffer, dtype=torch.uint8, count=n_bytes, offset=offset)


# ---- GGUF names -> gptkit names ----------------------------------------------------------------------
# Each of our parameters = row-wise concatenation of the GGUF tensors listed (first alternative present).
BLOCK_RULES: dict[str, tuple[tuple[str, ...], ...]] = {
    "attn_norm.{p}": (("attn_norm.{p}",),),
    "attn.qkv.{p}": (("attn_qkv.{p}",), ("attn_q.{p}", "attn_k.{p}", "attn_v.{p}")),
    "attn.proj.{p}": (("attn_output.{p}",),),
    "mlp_norm.{p}": (("ffn_norm.{p}",),),
    "mlp.gate_up.{p}": (("ffn_gate.{p}", "ffn_up.{p}"),),
    "mlp.up.{p}": (("ffn_up.{p}",),),
    "mlp.down.{p}": (("ffn_down.{p}",),),
}
GLOBAL_RULES: dict[str, str] = {
    "embed.weight": "token_embd.weight",
    "pos_embed.weight": "position_embd.weight",
    "norm.{p}": "output_norm.{p}",
    "lm_head.weight": "output.weight",
}
_BLOCK_NAME = re.compile(r"blocks\.(\d+)\.(.+)\.(weight|bias)")


def gguf_sources(name: str, available: set[str] | dict) -> tuple[str, ...]:
    """The GGUF tensor names that make up our parameter ``name`` (e.g. blk.3.attn_q/k/v.weight)."""
    match = _BLOCK_NAME.fullmatch(name)
    if match:
        layer, module, kind = match.groups()
        alternatives = BLOCK_RULES.get(f"{module}.{{p}}")
        if alternatives is None:
            raise WeightsError(f"no GGUF mapping for parameter {name!r}")
        candidates = [tuple(f"blk.{layer}.{s.format(p=kind)}" for s in alt) for alt in alternatives]
        return next((c for c in candidates if all(s in available for s in c)), candidates[-1])
    module, _, kind = name.rpartition(".")
    source = GLOBAL_RULES.get(name) or GLOBAL_RULES.get(f"{module}.{{p}}")
    if source is None:
        raise WeightsError(f"no GGUF mapping for parameter {name!r}")
    return (source.format(p=kind),)


def unpermute_rows(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K permute (interleaved RoPE pairs -> HF's rotate-half halves); rows = heads*head_dim."""
    head_dim = w.shape[0] // n_head
    return w.reshape(n_head, head_dim // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _row_transforms(arch: str, config: GPT4Config) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Per GGUF tensor kind (``attn_q``), the transform from stored rows to ours."""
    if arch not in PERMUTED_QK_ARCHITECTURES:
        return {}
    return {
        "attn_q": lambda w: unpermute_rows(w, config.n_head),
        "attn_k": lambda w: unpermute_rows(w, config.kv_heads),
    }


def _source_shapes(config: GPT4Config) -> dict[str, tuple[int, ...]]:
    """The shape the config implies for every GGUF weight kind (a bias has the weight's first dim)."""
    d, hd, f = config.n_embd, config.dim_per_head, config.ffn_dim
    q, kv = config.n_head * hd, config.kv_heads * hd
    return {
        "token_embd": (config.vocab_size, d), "position_embd": (config.context_length, d),
        "output": (config.vocab_size, d), "output_norm": (d,), "attn_norm": (d,), "ffn_norm": (d,),
        "attn_q": (q, d), "attn_k": (kv, d), "attn_v": (kv, d), "attn_qkv": (q + 2 * kv, d),
        "attn_output": (d, q), "ffn_gate": (f, d), "ffn_up": (f, d), "ffn_down": (d, f),
    }  # fmt: skip


def _kind(gguf_name: str) -> tuple[str, str]:
    """``blk.3.attn_q.weight`` -> (``attn_q``, ``weight``)."""
    parts = gguf_name.split(".")
    return parts[-2], parts[-1]


def _check_shape(tensor: GGUFTensor, shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a GGUF tensor whose shape disagrees with the metadata."""
    kind, suffix = _kind(tensor.name)
    expected = shapes[kind] if suffix == "weight" else shapes[kind][:1]
    if tensor.shape != expected:
        raise WeightsError(
            f"tensor {tensor.name!r} has shape {tensor.shape} (GGUF dims {tuple(reversed(tensor.shape))}), "
            f"but the metadata implies {expected}"
        )


def _check_block_count(config: GPT4Config, tensors: dict[str, GGUFTensor]) -> None:
    """block_count must match the ``blk.N`` tensors (checked before a model of that depth is built)."""
    blocks = {name.split(".")[1] for name in tensors if name.startswith("blk.")}
    in_range = all(b.isdigit() and int(b) < config.n_layer for b in blocks)
    if len(blocks) != config.n_layer or not in_range:  # no set of range(n_layer): n_layer may be huge
        raise WeightsError(
            f"block_count={config.n_layer} but the file has tensors for {len(blocks)} blocks "
            f"({', '.join(sorted(blocks, key=lambda b: (len(b), b))[:5])}{'...' if len(blocks) > 5 else ''})"
        )


def _plan(config: GPT4Config, tensors: dict[str, GGUFTensor]) -> dict[str, tuple[GGUFTensor, ...]]:
    """Our name -> the GGUF tensors it is made of; refuses missing, unknown and mis-shaped tensors."""
    _check_block_count(config, tensors)
    plan = {name: gguf_sources(name, tensors) for name in parameter_shapes(config)}
    missing = sorted(
        f"{s} (for {name})" for name, sources in plan.items() for s in sources if s not in tensors
    )
    if missing:
        raise WeightsError(f"GGUF file lacks tensors the config needs: {', '.join(missing[:5])}")
    used = {s for sources in plan.values() for s in sources}
    unknown = sorted(set(tensors) - used)
    if unknown:
        raise WeightsError(
            f"GGUF file has tensors gptkit does not know for this config: {', '.join(unknown[:5])}"
        )
    shapes = _source_shapes(config)
    for tensor in tensors.values():
        _check_shape(tensor, shapes)
    return {name: tuple(tensors[s] for s in sources) for name, sources in plan.items()}


def _build(sources: tuple[GGUFTensor, ...], transforms: dict[str, Callable]) -> torch.Tensor:
    """Dequantize, transform and concatenate the GGUF tensors of one parameter."""
    parts = []
    for tensor in sources:
        values = tensor.dequantize()
        transform = transforms.get(_kind(tensor.name)[0])
        parts.append(transform(values) if transform else values)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def open_gguf_state(
    path: str | Path,
) -> tuple[GPT4Config, dict[str, tuple[int, ...]], Callable[[str], torch.Tensor]]:
    """(config, our parameter shapes, read) for a GGUF file: every tensor is checked, none dequantized.

    ``read(name)`` dequantizes one parameter (float32) on demand, so a loader can hold one at a time.
    """
    header = read_header(path)
    tensors = {t.name: t for t in iter_gguf_tensors(path, header)}
    metadata = dict(header.metadata)
    arch = metadata.get("general.architecture")
    if f"{arch}.vocab_size" not in metadata and "token_embd.weight" in tensors:
        metadata[f"{arch}.vocab_size"] = tensors["token_embd.weight"].shape[0]  # the table is the truth
    config = config_from_gguf(metadata, tensor_names=set(tensors))
    plan = _plan(config, tensors)
    transforms = _row_transforms(arch, config)
    shapes = {name: _stacked_shape(sources) for name, sources in plan.items()}

    def read(name: str) -> torch.Tensor:
        tensor = _build(plan[name], transforms)
        for source in plan[name]:  # loaders read each parameter once: its pages need not stay resident
            _drop_file_pages(source)
        return tensor

    read.blocks = lambda name: _blocks(plan[name], transforms)  # the quantized path's view of a parameter
    return config, shapes, read


# byte offsets of the fp16 scale fields (d, and m or dmin) inside one block of each quantized type
SCALE_FIELDS = {Q.Q4_0: (0,), Q.Q4_1: (0, 2), Q.Q5_0: (0,), Q.Q5_1: (0, 2), Q.Q8_0: (0,), Q.Q2_K: (80, 82),
                Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}  # fmt: skip


def check_scales(rows: torch.Tensor, ggml_type: int, name: str) -> None:
    """Refuse quantized blocks whose fp16 scales are NaN or infinite (they would compute garbage)."""
    qtype = Q(ggml_type)
    blocks = rows.reshape(-1, GGML_QUANT_SIZES[qtype][1])  # (n_blocks, type_size)
    for offset in SCALE_FIELDS.get(qtype, ()):
        scales = blocks[:, offset : offset + 2].contiguous().view(torch.float16)
        if not bool(torch.isfinite(scales).all()):
            raise WeightsError(f"tensor {name!r} ({qtype.name}) has NaN or infinite block scales")


@dataclass
class StoredRows:
    """A 2-D parameter's quantized rows as the file stores them: its GGUF tensors' rows (views of the
    file) concatenated, then taken in ``order`` (its row transforms as a permutation; None: as stored)."""

    name: str  # the GGUF tensor name(s), for messages
    ggml_type: int
    parts: list[torch.Tensor]  # each (N_i, row_bytes) uint8
    order: torch.Tensor | None  # (N,) int64

    def materialize(self) -> torch.Tensor:
        """The rows (N, row_bytes) in our order, checked for finite scales (a copy unless a plain view)."""
        rows = self.parts[0] if len(self.parts) == 1 else torch.cat(self.parts)
        rows = rows if self.order is None else rows.index_select(0, self.order)
        check_scales(rows, self.ggml_type, self.name)
        return rows

    def release(self) -> None:
        """Drop the file pages under the parts (after they were copied elsewhere)."""
        for part in self.parts:
            _drop_file_pages(part)


def _blocks(sources: tuple[GGUFTensor, ...], transforms: dict[str, Callable]) -> StoredRows | None:
    """The StoredRows of a 2-D parameter whose parts share one quantized type; None for float or mixed types."""
    types = {tensor.ggml_type for tensor in sources}
    if len(types) != 1 or len(sources[0].shape) != 2 or next(iter(types)) in (Q.F32, Q.F16, Q.BF16):
        return None
    parts, orders, offset = [], [], 0
    for tensor in sources:
        parts.append(tensor.data.view(tensor.shape[0], -1))  # (N_i, row_bytes): a view of the file
        index = torch.arange(tensor.shape[0])
        transform = transforms.get(_kind(tensor.name)[0])
        orders.append((transform(index) if transform else index) + offset)
        offset += tensor.shape[0]
    order = torch.cat(orders)
    as_stored = bool(torch.equal(order, torch.arange(offset)))
    name = " + ".join(tensor.name for tensor in sources)
    return StoredRows(name, int(types.pop()), parts, None if as_stored else order)


def _stacked_shape(sources: tuple[GGUFTensor, ...]) -> tuple[int, ...]:
    """The shape of the row-wise concatenation of ``sources``."""
    return (sum(t.shape[0] for t in sources), *sources[0].shape[1:])


def load_gguf_state(path: str | Path) -> tuple[GPT4Config, dict[str, torch.Tensor]]:
    """(config, state dict in our names, float32) for a GGUF file; every tensor is checked first."""
    config, shapes, read = open_gguf_state(path)
    # Serial on purpose: torch's intra-op threads already use every core; a thread pool measured slower.
    return config, {name: read(name) for name in shapes}
