"""Read a GGUF file's header safely: every length and offset is checked, failures are typed errors."""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptkit.errors import WeightsError
from gptkit.weights.gguf_config import ARCHITECTURES

GGUF_MAGIC = b"GGUF"


def read_metadata(path: str | Path) -> dict[str, Any]:
    """All key/value metadata as plain Python values (strings, numbers, lists)."""
    return read_header(path).metadata


# ---- fast header parser ----------------------------------------------------------------------------
# GGUFReader walks every metadata string with numpy (about 2 s for a 49k-token vocabulary); the loader
# only needs the header, so it parses it here with `struct`, checking every length against the file.

GGUF_VERSIONS = (2, 3)
GGML_MAX_DIMS = 4
DEFAULT_ALIGNMENT = 32
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
            12: "<d"}  # fmt: skip
_NUMPY_SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8",
                  11: "<i8", 12: "<f8"}  # fmt: skip
_STRING, _ARRAY = 8, 9
METADATA_NAMESPACES = frozenset({"general", "tokenizer", "split", *ARCHITECTURES})
TENSOR_NAME = re.compile(r"(blk\.\d+\.)?\w+\.(weight|bias)")


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table, exactly as stored (nothing dequantized, type id unchecked)."""

    name: str
    dims: tuple[int, ...]  # GGUF order: ne0 (the contiguous, fastest-varying axis) first
    type_id: int  # raw ggml type id
    offset: int  # absolute byte offset of the data in the file

    @property
    def shape(self) -> tuple[int, ...]:
        """The row-major (PyTorch/NumPy) shape: the dims reversed."""
        return tuple(reversed(self.dims))


@dataclass(frozen=True)
class GGUFHeader:
    """Everything before the tensor data: version, metadata, tensor table, alignment."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int  # where the aligned tensor-data section begins
    file_size: int


class _Cursor:
    """Bounds-checked little-endian reads over a buffer; every overrun becomes a WeightsError."""

    def __init__(self, buf, size: int, path: Path) -> None:
        self.buf, self.size, self.path, self.pos = buf, size, path, 0

    def fail(self, what: str) -> WeightsError:
        return WeightsError(f"{self.path} is a corrupt or truncated GGUF file: {what} at byte {self.pos}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"{what} ({n} bytes) runs past the end of the file ({self.size} bytes)")

    def scalar(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self, what: str) -> str:
        n = self.scalar("<Q", f"length of {what}")
        self.need(n, what)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} is not valid UTF-8 ({exc})") from None

    def value(self, type_id: int, what: str) -> Any:
        """One metadata value of GGUF value type ``type_id`` (arrays become lists)."""
        if type_id in _SCALARS:
            return self.scalar(_SCALARS[type_id], what)
        if type_id == _STRING:
            return self.string(what)
        if type_id == _ARRAY:
            item_type = self.scalar("<I", f"item type of {what}")
            count = self.scalar("<Q", f"length of {what}")
            return self.array(item_type, count, what)
        raise self.fail(f"{what} has unknown value type {type_id}")

    def array(self, item_type: int, count: int, what: str) -> list[Any]:
        if item_type in _NUMPY_SCALARS:  # numbers: one vectorised read
            dtype = np.dtype(_NUMPY_SCALARS[item_type])
            self.need(count * dtype.itemsize, what)
            values = np.frombuffer(self.buf, dtype, count, self.pos).tolist()
            self.pos += count * dtype.itemsize
            return values
        if count * 8 > self.size - self.pos:  # every string or array item takes at least 8 bytes
            raise self.fail(f"{what} claims {count} items, more than the file can hold")
        if item_type == _STRING:
            return self.strings(count, what)
        return [self.value(item_type, f"{what}[{i}]") for i in range(count)]

    def strings(self, count: int, what: str) -> list[str]:
        """``count`` strings in one tight loop (a vocabulary has ~100k): the checks of ``string``."""
        buf, size, pos, out = self.buf, self.size, self.pos, []
        length = struct.Struct("<Q").unpack_from
        for i in range(count):
            if pos + 8 > size:
                self.pos = pos
                raise self.fail(
                    f"length of {what}[{i}] (8 bytes) runs past the end of the file ({size} bytes)"
                )
            (n,) = length(buf, pos)
            if n > size - pos - 8:
                self.pos = pos + 8
                raise self.fail(f"{what}[{i}] ({n} bytes) runs past the end of the file ({size} bytes)")
            try:
                out.append(str(buf[pos + 8 : pos + 8 + n], "utf-8"))
            except UnicodeDecodeError as exc:
                self.pos = pos + 8
                raise self.fail(f"{what}[{i}] is not valid UTF-8 ({exc})") from None
            pos += 8 + n
        self.pos = pos
        return out


def read_header(path: str | Path) -> GGUFHeader:
    """Parse a GGUF header (metadata + tensor table) quickly, refusing anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"GGUF file not found: {path}")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 4 or fh.read(4) != GGUF_MAGIC:
            raise WeightsError(f"{path} is not a GGUF file (it does not start with {GGUF_MAGIC!r})")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse_header(_Cursor(buf, size, path))


def _parse_header(cur: _Cursor) -> GGUFHeader:
    """Magic, version, counts, key/values, tensor infos, then the aligned start of the data."""
    cur.pos = 4
    version = cur.scalar("<I", "version")
    if version not in GGUF_VERSIONS:
        raise cur.fail(
            f"unsupported GGUF version {version} (supported: {GGUF_VERSIONS}; big-endian unsupported)"
        )
    n_tensors = cur.scalar("<Q", "tensor count")
    n_kv = cur.scalar("<Q", "metadata count")
    if n_tensors > cur.size or n_kv > cur.size:
        raise cur.fail(f"implausible counts ({n_tensors} tensors, {n_kv} metadata keys)")
    metadata = _parse_metadata(cur, n_kv)
    entries = [_parse_tensor_info(cur, n_kv) for _ in range(n_tensors)]
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1):
        raise cur.fail(f"general.alignment={alignment!r} is not a power of two")
    data_offset = -(-cur.pos // alignment) * alignment
    tensors = tuple(
        TensorInfo(name, dims, type_id, data_offset + rel) for name, dims, type_id, rel in entries
    )
    return GGUFHeader(cur.path, version, metadata, tensors, alignment, data_offset, cur.size)


def _parse_metadata(cur: _Cursor, n_kv: int) -> dict[str, Any]:
    """The key/value table; a key that is a tensor's name means the header's count is too large."""
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string(f"metadata key {len(metadata) + 1} of {n_kv}")
        if TENSOR_NAME.fullmatch(key):
            raise cur.fail(
                f"metadata key {len(metadata) + 1} of {n_kv} is {key!r}, a tensor name: the header's "
                f"metadata count ({n_kv}) is larger than the key/value table"
            )
        if key in metadata:
            raise cur.fail(f"duplicate metadata key {key!r}")
        metadata[key] = cur.value(cur.scalar("<I", f"value type of {key!r}"), repr(key))
    return metadata


def _parse_tensor_info(cur: _Cursor, n_kv: int) -> tuple[str, tuple[int, ...], int, int]:
    """(name, dims, type id, offset relative to the data section) of one tensor-table entry."""
    name = cur.string("tensor name")
    if name.split(".")[0] in METADATA_NAMESPACES:
        raise cur.fail(
            f"a tensor-table entry is named {name!r}, a metadata key: the header's metadata count ({n_kv}) "
            "is smaller than the key/value table"
        )
    n_dims = cur.scalar("<I", f"dimension count of tensor {name!r}")
    if not 1 <= n_dims <= GGML_MAX_DIMS:
        raise cur.fail(f"tensor {name!r} has {n_dims} dimensions (1..{GGML_MAX_DIMS} allowed)")
    dims = tuple(cur.scalar("<Q", f"dimensions of tensor {name!r}") for _ in range(n_dims))
    type_id = cur.scalar("<I", f"type of tensor {name!r}")
    offset = cur.scalar("<Q", f"data offset of tensor {name!r}")
    return name, dims, type_id, offset
