"""A corpus of corrupt model files: each gives one typed gptkit error, from loading and from `gptkit info`.

Every file is made from a small valid one (a tiny Llama GGUF, a tiny Llama HF directory) by one change.
`gptkit info` checks the whole file by default, so it must exit 1 with one line wherever loading fails.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from safetensors.torch import load_file, save_file
from test_gguf_builders import llama_metadata, write_tiny_llama

from gptkit import (
    ConfigError,
    GPT4Config,
    GPT4LMHeadModel,
    GPTKitError,
    ModelNotFoundError,
    UnsupportedTensorTypeError,
    WeightsError,
)
from gptkit.cli import main

HF_LLAMA = GPT4Config(
    vocab_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=48, context_length=32,
    positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_word_embeddings=False,
)  # fmt: skip
K_PROJ = "model.layers.0.self_attn.k_proj.weight"
N_KV = len(llama_metadata()) + 0  # the builder's keys, general.architecture included


# ---- byte-level GGUF edits ------------------------------------------------------------------------------
def _key_at(data: bytearray, key: str) -> int:
    """Byte offset of a metadata key's (or tensor name's) length prefix."""
    encoded = key.encode()
    return data.index(struct.pack("<Q", len(encoded)) + encoded)


def _tensor_field(data: bytearray, name: str, field: str) -> int:
    """Byte offset of a tensor-table entry's n_dims, dims, type or offset field."""
    start = _key_at(data, name) + 8 + len(name)
    (n_dims,) = struct.unpack_from("<I", data, start)
    return {"n_dims": start, "dims": start + 4, "type": start + 4 + 8 * n_dims}.get(
        field, start + 8 + 8 * n_dims
    )


def put(fmt: str, where: Callable[[bytearray], int], value) -> Callable[[bytearray], None]:
    def patch(d: bytearray) -> None:
        struct.pack_into(fmt, d, where(d), value)

    return patch


def replace(old: bytes, new: bytes) -> Callable[[bytearray], None]:
    def patch(d: bytearray) -> None:
        at = d.index(old)
        d[at : at + len(old)] = new

    return patch


def cut(keep: int | Callable[[bytearray], int]) -> Callable[[bytearray], None]:
    def patch(d: bytearray) -> None:
        del d[(keep(d) if callable(keep) else keep) :]

    return patch


def field(name: str, kind: str) -> Callable[[bytearray], int]:
    return lambda d: _tensor_field(d, name, kind)


def tensor_offset(name: str) -> Callable[[bytearray], int]:
    return field(name, "offset")


def read_offset(d: bytearray, name: str) -> int:
    return struct.unpack_from("<Q", d, _tensor_field(d, name, "offset"))[0]


def same_offset_as(name: str, other: str) -> Callable[[bytearray], None]:
    def patch(d: bytearray) -> None:
        struct.pack_into("<Q", d, _tensor_field(d, name, "offset"), read_offset(d, other))

    return patch


def value_type_of(key: str) -> Callable[[bytearray], int]:
    return lambda d: _key_at(d, key) + 8 + len(key)


FIRST_KEY = 24  # the first metadata key's length prefix follows magic, version and the two counts
LAST = "output.weight"
GGUF_BYTE_CASES: dict[str, tuple[Callable[[bytearray], None], type[GPTKitError], str]] = {
    "bad magic": (replace(b"GGUF", b"GGML"), WeightsError, "not a GGUF file"),
    "version 1": (put("<I", lambda d: 4, 1), WeightsError, "unsupported GGUF version 1"),
    "version 99": (put("<I", lambda d: 4, 99), WeightsError, "unsupported GGUF version 99"),
    "big-endian version": (put(">I", lambda d: 4, 3), WeightsError, "big-endian"),
    "huge tensor count": (put("<Q", lambda d: 8, 2**40), WeightsError, "implausible counts"),
    "huge metadata count": (put("<Q", lambda d: 16, 2**62), WeightsError, "implausible counts"),
    "metadata count 0": (put("<Q", lambda d: 16, 0), WeightsError, "metadata count \\(0\\) is smaller"),
    "metadata count short": (put("<Q", lambda d: 16, N_KV - 3), WeightsError, "is smaller than the key/va"),
    "metadata count long": (put("<Q", lambda d: 16, N_KV + 1), WeightsError, "is larger than the key/value"),
    "huge key length": (put("<Q", lambda d: FIRST_KEY, 2**60), WeightsError, "runs past the end"),
    "huge string value": (
        put("<Q", lambda d: value_type_of("general.architecture")(d) + 4, 2**50),
        WeightsError,
        "runs past the end",
    ),
    "key not utf-8": (
        replace(b"llama.block_count", b"llama.block\xff\xfeunt"),
        WeightsError,
        "not valid UTF-8",
    ),
    "unknown value type": (
        put("<I", value_type_of("llama.block_count"), 99),
        WeightsError,
        "unknown value type",
    ),
    "duplicate key": (
        replace(b"tokenizer.ggml.eos_token_id", b"tokenizer.ggml.bos_token_id"),
        WeightsError,
        "duplicate",
    ),
    "wrong value type": (put("<I", value_type_of("llama.block_count"), 6), ConfigError, "wrong type"),
    "no architecture key": (
        replace(b"general.architecture", b"general.architectur_"),
        ConfigError,
        "no 'gene",
    ),
    "unsupported architecture": (
        replace(b"\x05\x00\x00\x00\x00\x00\x00\x00llama", b"\x05" + b"\x00" * 7 + b"bert5"),
        ConfigError,
        "architecture 'bert5' is not supported",
    ),  # fmt: skip
    "empty file": (cut(0), WeightsError, "not a GGUF file"),
    "cut in the magic": (cut(3), WeightsError, "not a GGUF file"),
    "cut in the counts": (cut(12), WeightsError, "truncated"),
    "cut in the metadata": (cut(200), WeightsError, "truncated"),
    "cut in the tensor table": (cut(lambda d: _key_at(d, LAST) + 4), WeightsError, "truncated"),
    "cut at the data start": (cut(lambda d: _tensor_field(d, LAST, "offset") + 8), WeightsError, "truncated"),
    "cut in the data": (cut(lambda d: len(d) // 2), WeightsError, "is truncated: tensor"),
    "last byte missing": (cut(lambda d: len(d) - 1), WeightsError, "is truncated: tensor"),
    "offset past the end": (
        put("<Q", tensor_offset("blk.0.ffn_up.weight"), 2**40),
        WeightsError,
        "truncated",
    ),
    "offset misaligned": (
        lambda d: struct.pack_into("<Q", d, _tensor_field(d, LAST, "offset"), read_offset(d, LAST) + 1),
        WeightsError,
        "not 32-aligned",
    ),
    "overlapping data": (
        same_offset_as("blk.0.ffn_up.weight", "blk.0.ffn_gate.weight"),
        WeightsError,
        "overlap",
    ),
    "tensor type 999": (
        put("<I", field("blk.1.attn_q.weight", "type"), 999),
        UnsupportedTensorTypeError,
        "999",
    ),
    "integer tensor type": (
        put("<I", field("blk.1.attn_q.weight", "type"), int(Q.I32)),
        UnsupportedTensorTypeError,
        "holds no weights",
    ),  # fmt: skip
    "zero dimensions": (put("<I", field(LAST, "n_dims"), 0), WeightsError, "0 dimensions"),
    "five dimensions": (put("<I", field(LAST, "n_dims"), 5), WeightsError, "5 dimensions"),
    "absurd tensor dims": (put("<Q", field(LAST, "dims"), 2**40), WeightsError, "truncated"),
    "rows not whole blocks": (
        put("<Q", field("blk.0.attn_q.weight", "dims"), 48),
        WeightsError,
        "block size",
    ),
    "smaller dims": (put("<Q", field("blk.0.attn_q.weight", "dims"), 128), WeightsError, "metadata implies"),
    "duplicate tensor": (replace(b"blk.0.attn_k.weight", b"blk.0.attn_q.weight"), WeightsError, "duplicate"),
    "tensor name not utf-8": (
        replace(b"blk.0.attn_k.weight", b"blk.0.attn_\xffweight"),
        WeightsError,
        "UTF-8",
    ),
    "unknown tensor name": (replace(b"blk.0.attn_k.weight", b"blk.0.attn_z.weight"), WeightsError, "lacks"),
}
GGUF_BUILT_CASES: dict[str, tuple[dict, type[GPTKitError], str]] = {
    "missing tensor": (dict(drop=("blk.1.ffn_up.weight",)), WeightsError, "lacks tensors"),
    "extra tensor": (
        dict(add={"blk.0.mystery.weight": (np.zeros(256, np.float32), None)}),
        WeightsError,
        "not know",
    ),
    "block count mismatch": (dict(llama__block_count=3), WeightsError, "block_count=3"),
    "absurd embedding length": (
        dict(llama__embedding_length=2**31),
        ConfigError,
        "config.n_embd=2147483648 exc",
    ),
    "absurd context length": (
        dict(llama__context_length=2**31),
        ConfigError,
        "config.context_length=2147483648",
    ),
    "absurd vocabulary": (dict(llama__vocab_size=2**31), ConfigError, "vocab_size"),
    "zero heads": (dict(llama__attention__head_count=0), ConfigError, "n_head must be a positive"),
    "alignment not a power of two": (dict(general__alignment=3), WeightsError, "not a power of two"),
}


# ---- safetensors / Hugging Face directory edits --------------------------------------------------------
def _header(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data)
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def edit_header(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """Rewrite the safetensors JSON header in place (the data bytes stay as they are)."""

    def edit(directory: Path) -> None:
        path = directory / "model.safetensors"
        header, body = _header(path)
        change(header)
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)

    return edit


def edit_bytes(change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        path = directory / "model.safetensors"
        path.write_bytes(change(path.read_bytes()))

    return edit


def edit_tensors(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        tensors = load_file(directory / "model.safetensors")
        change(tensors)
        save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})

    return edit


def edit_config(**changes) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        path = directory / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    return edit


def write_file(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda directory: (directory / name).write_bytes(content)


def remove(name: str) -> Callable[[Path], None]:
    return lambda directory: (directory / name).unlink()


def set_entry(name: str, **changes) -> Callable[[dict], None]:
    return lambda header: header[name].update(changes)


def _header_length(data: bytes) -> int:
    return struct.unpack_from("<Q", data)[0]


HUGE = 2**40
HF_CASES: dict[str, tuple[Callable[[Path], None], type[GPTKitError], str]] = {
    "st empty file": (edit_bytes(lambda b: b""), WeightsError, "not a valid safetensors"),
    "st cut in the length": (edit_bytes(lambda b: b[:5]), WeightsError, "not a valid safetensors"),
    "st cut in the header": (edit_bytes(lambda b: b[:40]), WeightsError, "not a valid safetensors"),
    "st cut in the data": (edit_bytes(lambda b: b[: len(b) // 2]), WeightsError, "not a valid safetensors"),
    "st last byte missing": (edit_bytes(lambda b: b[:-1]), WeightsError, "not a valid safetensors"),
    "st extra bytes": (edit_bytes(lambda b: b + b"\0" * 8), WeightsError, "not a valid safetensors"),
    "st header length beyond file": (edit_bytes(lambda b: struct.pack("<Q", len(b)) + b[8:]), WeightsError, "sa"),
    "st header length huge": (edit_bytes(lambda b: struct.pack("<Q", 2**63) + b[8:]), WeightsError, "safetensors"),
    "st header length short": (
        edit_bytes(lambda b: struct.pack("<Q", _header_length(b) - 9) + b[8:]),
        WeightsError,
        "not a valid safetensors",
    ),
    "st header not json": (edit_bytes(lambda b: b[:8] + b"\xff" * 16 + b[24:]), WeightsError, "not a valid"),
    "st header a list": (
        edit_bytes(lambda b: struct.pack("<Q", 8) + b"[1,2,3] " + b[8 + _header_length(b) :]),
        WeightsError,
        "not a valid safetensors",
    ),
    "st bad dtype": (edit_header(set_entry(K_PROJ, dtype="F99")), WeightsError, "not a valid safetensors"),
    "st unsupported dtype": (edit_tensors(lambda t: t.update({K_PROJ: t[K_PROJ].long()})), WeightsError, "I64"),
    "st offsets past the end": (edit_header(set_entry(K_PROJ, data_offsets=[0, HUGE])), WeightsError, "not a va"),
    "st offsets reversed": (
        edit_header(lambda h: h[K_PROJ].update(data_offsets=h[K_PROJ]["data_offsets"][::-1])),
        WeightsError,
        "not a valid safetensors",
    ),
    "st shape disagrees with bytes": (edit_header(set_entry(K_PROJ, shape=[16, 33])), WeightsError, "not a va"),
    "st absurd shape": (edit_header(set_entry(K_PROJ, shape=[HUGE, HUGE])), WeightsError, "not a valid"),
    "st wrong shape": (edit_tensors(lambda t: t.update({K_PROJ: torch.zeros(8, 32)})), WeightsError, "implies"),
    "st missing tensor": (edit_tensors(lambda t: t.pop(K_PROJ)), WeightsError, "lacks 1 tensor"),
    "st unexpected tensor": (
        edit_tensors(lambda t: t.update({"model.layers.0.extra.weight": torch.zeros(2)})),
        WeightsError,
        "unexpected tensor",
    ),
    "st pickle only": (
        lambda d: (remove("model.safetensors")(d), write_file("pytorch_model.bin", b"\x80\x04K\x01.")(d)),
        WeightsError,
        "refuses to unpickle",
    ),
    "no weights file": (remove("model.safetensors"), ModelNotFoundError, "neither model.safetensors"),
    "config absurd dims": (
        edit_config(hidden_size=2**40, num_attention_heads=2**20, intermediate_size=2**40),
        ConfigError,
        "exceeds gptkit's sanity limit",
    ),
    "config negative layers": (edit_config(num_hidden_layers=-1), ConfigError, "n_layer must be a positive"),
    "config layers a string": (edit_config(num_hidden_layers="2"), ConfigError, "n_layer must be a positive"),
    "config not json": (write_file("config.json", b"{not json"), ConfigError, "not valid JSON"),
    "config not utf-8": (write_file("config.json", b'{"model_type": "\xff"}'), ConfigError, "not valid JSON"),
    "config a list": (write_file("config.json", b"[]"), ConfigError, "JSON object"),
    "config unknown model type": (edit_config(model_type="gpt_neox"), ConfigError, "not supported"),
    "index names a missing shard": (
        lambda d: (
            remove("model.safetensors")(d),
            write_file("model.safetensors.index.json", b'{"weight_map": {"a": "model-00001-of-00002.safetensors"}}')(d),
        ),
        ModelNotFoundError,
        "missing",
    ),
    "index not json": (
        lambda d: (remove("model.safetensors")(d), write_file("model.safetensors.index.json", b"{")(d)),
        WeightsError,
        "not a valid safetensors index",
    ),
    "index escapes the directory": (
        lambda d: (
            remove("model.safetensors")(d),
            write_file("model.safetensors.index.json", b'{"weight_map": {"a": "../x.safetensors"}}')(d),
        ),
        WeightsError,
        "plain file names",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def good_gguf(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("corpus") / "good.gguf", Q.Q8_0)


@pytest.fixture(scope="module")
def good_hf(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("corpus-hf") / "model"
    GPT4LMHeadModel(HF_LLAMA).save_pretrained(directory)
    return directory


def assert_refused(path: Path, error: type[GPTKitError], message: str, capsys) -> None:
    """Loading raises exactly ``error`` (matching ``message``); `gptkit info` exits 1 with that one line."""
    with pytest.raises(GPTKitError, match=message) as info:
        GPT4LMHeadModel.from_pretrained(path)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    capsys.readouterr()
    assert main(["info", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("gptkit info: error: ")
    assert str(info.value).split("\n")[0][:60] in err


def test_the_corpus_is_large_enough():
    assert len(GGUF_BYTE_CASES) + len(GGUF_BUILT_CASES) + len(HF_CASES) >= 40


def test_the_good_files_pass(good_gguf, good_hf, capsys):
    for path in (good_gguf, good_hf):
        GPT4LMHeadModel.from_pretrained(path)
        assert main(["info", str(path)]) == 0


@pytest.mark.parametrize("case", list(GGUF_BYTE_CASES))
def test_corrupt_gguf_bytes(case, good_gguf, tmp_path, capsys):
    patch, error, message = GGUF_BYTE_CASES[case]
    data = bytearray(good_gguf.read_bytes())
    patch(data)
    path = tmp_path / "bad.gguf"
    path.write_bytes(bytes(data))
    assert_refused(path, error, message, capsys)


@pytest.mark.parametrize("case", list(GGUF_BUILT_CASES))
def test_corrupt_gguf_contents(case, tmp_path, capsys):
    changes, error, message = GGUF_BUILT_CASES[case]
    assert_refused(write_tiny_llama(tmp_path / "bad.gguf", Q.Q8_0, **changes), error, message, capsys)


@pytest.mark.parametrize("case", list(HF_CASES))
def test_corrupt_hf_directory(case, good_hf, tmp_path, capsys):
    edit, error, message = HF_CASES[case]
    directory = Path(shutil.copytree(good_hf, tmp_path / "model"))
    edit(directory)
    assert_refused(directory, error, message, capsys)


def test_metadata_only_reads_just_the_header(good_gguf, good_hf, tmp_path, capsys):
    """--metadata-only skips the tensor checks (a truncated data section passes) but not the config's."""
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(good_gguf.read_bytes()[:-1000])
    assert main(["info", "--metadata-only", str(truncated)]) == 0
    assert "checked: metadata only" in capsys.readouterr().out
    absurd = Path(shutil.copytree(good_hf, tmp_path / "absurd"))
    edit_config(hidden_size=2**40)(absurd)
    assert main(["info", "--metadata-only", str(absurd)]) == 1
    err = capsys.readouterr().err
    assert (
        "config.n_embd=1099511627776 exceeds gptkit's sanity limit of 65,536" in err and err.count("\n") == 1
    )
