"""Bad GGUF input -> typed errors with messages that name the problem (never IndexError/struct.error)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gguf_builders import write_tiny_llama

from gptkit.errors import ConfigError, GPTKitError, UnsupportedTensorTypeError, WeightsError
from gptkit.modeling import GPT4LMHeadModel
from gptkit.weights.gguf_file import read_header
from gptkit.weights.gguf_io import load_gguf_state


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("errors") / "good.gguf", Q.Q8_0)


def _patched(tmp_path, source, patch) -> str:
    """A copy of ``source`` with ``patch(bytearray)`` applied."""
    data = bytearray(source.read_bytes())
    patch(data)
    path = tmp_path / "bad.gguf"
    path.write_bytes(bytes(data))
    return path


def _type_field(data: bytearray, name: str) -> int:
    """Byte offset of the ggml type id in tensor ``name``'s table entry."""
    encoded = name.encode()
    start = data.index(struct.pack("<Q", len(encoded)) + encoded) + 8 + len(encoded)
    (n_dims,) = struct.unpack_from("<I", data, start)
    return start + 4 + 8 * n_dims


def test_good_file_loads(good_file):
    GPT4LMHeadModel.from_state_dict(*load_gguf_state(good_file))


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_gguf_state(tmp_path / "nope.gguf")


def test_wrong_magic(tmp_path, good_file):
    path = _patched(tmp_path, good_file, lambda d: d.__setitem__(slice(0, 4), b"GGML"))
    with pytest.raises(WeightsError, match="not a GGUF file"):
        load_gguf_state(path)


def test_unsupported_version(tmp_path, good_file):
    path = _patched(tmp_path, good_file, lambda d: d.__setitem__(slice(4, 8), struct.pack("<I", 99)))
    with pytest.raises(WeightsError, match="unsupported GGUF version 99"):
        load_gguf_state(path)


def test_corrupt_header_lengths(tmp_path, good_file):
    """A metadata key claiming a huge length, and absurd counts, are refused before any allocation."""
    huge_key = _patched(tmp_path, good_file, lambda d: d.__setitem__(slice(24, 32), struct.pack("<Q", 2**60)))
    with pytest.raises(WeightsError, match="runs past the end"):
        load_gguf_state(huge_key)
    huge_count = _patched(
        tmp_path, good_file, lambda d: d.__setitem__(slice(8, 16), struct.pack("<Q", 2**40))
    )
    with pytest.raises(WeightsError, match="implausible counts"):
        load_gguf_state(huge_count)


@pytest.mark.parametrize("keep", [3, 10, 100, 1000, 3000])
def test_truncated_header(tmp_path, good_file, keep):
    path = _patched(tmp_path, good_file, lambda d: d.__delitem__(slice(keep, None)))
    with pytest.raises(WeightsError, match="not a GGUF file|truncated"):
        load_gguf_state(path)


def test_truncated_data(tmp_path, good_file):
    """The tensor table is intact but the data stops early: caught before the lazy map is read."""
    size = good_file.stat().st_size
    path = _patched(tmp_path, good_file, lambda d: d.__delitem__(slice(size - 1000, None)))
    assert read_header(path).tensors  # the header alone still parses
    with pytest.raises(WeightsError, match=r"is truncated: tensor '.*' needs bytes .* the file has"):
        load_gguf_state(path)


def test_unknown_tensor_type_id(tmp_path, good_file):
    def patch(d: bytearray) -> None:
        at = _type_field(d, "blk.1.ffn_up.weight")
        d[at : at + 4] = struct.pack("<I", 99)

    with pytest.raises(UnsupportedTensorTypeError, match="'blk.1.ffn_up.weight' has unknown ggml type id 99"):
        load_gguf_state(_patched(tmp_path, good_file, patch))


def test_non_weight_tensor_type(tmp_path):
    path = write_tiny_llama(tmp_path / "i32.gguf", add={"blk.0.extra.weight": (np.zeros(4, np.int32), None)})
    with pytest.raises(UnsupportedTensorTypeError, match="'blk.0.extra.weight' has type I32"):
        load_gguf_state(path)


def test_duplicate_tensor_name(tmp_path, good_file):
    """Rename attn_k to attn_q in the table (same length), so the name appears twice."""

    def patch(d: bytearray) -> None:
        at = d.index(b"blk.0.attn_k.weight")
        d[at : at + 19] = b"blk.0.attn_q.weight"

    with pytest.raises(WeightsError, match="duplicate tensor name 'blk.0.attn_q.weight'"):
        load_gguf_state(_patched(tmp_path, good_file, patch))


def test_missing_tensor(tmp_path):
    path = write_tiny_llama(tmp_path / "missing.gguf", drop=("blk.1.ffn_up.weight",))
    with pytest.raises(
        WeightsError, match=r"lacks tensors .*blk\.1\.ffn_up\.weight \(for blocks\.1\.mlp\.gate_up"
    ):
        load_gguf_state(path)


def test_unknown_tensor_name(tmp_path):
    path = write_tiny_llama(
        tmp_path / "extra.gguf", add={"blk.0.mystery.weight": (np.zeros(256, np.float32), None)}
    )
    with pytest.raises(WeightsError, match="does not know for this config: blk.0.mystery.weight"):
        load_gguf_state(path)


def test_feed_forward_length_disagrees_with_tensors(tmp_path):
    path = write_tiny_llama(tmp_path / "ffn.gguf", llama__feed_forward_length=256)
    with pytest.raises(
        WeightsError, match=r"'blk.0.ffn_gate.weight' has shape \(512, 256\).*implies \(256, 256\)"
    ):
        load_gguf_state(path)


def test_embedding_length_disagrees_with_tensors(tmp_path):
    path = write_tiny_llama(
        tmp_path / "embd.gguf", llama__embedding_length=128, llama__rope__dimension_count=32
    )
    with pytest.raises(WeightsError, match=r"has shape .* but the metadata implies .*128"):
        load_gguf_state(path)


def test_partial_rotary_is_a_config_error(tmp_path):
    path = write_tiny_llama(tmp_path / "rot.gguf", llama__rope__dimension_count=32)
    with pytest.raises(ConfigError, match="partial rotary"):
        load_gguf_state(path)


def test_quantized_rows_must_be_whole_blocks(tmp_path):
    """A Q8_0 tensor whose row length (48) is not a multiple of 32 cannot exist; the patched table says so."""

    def patch(d: bytearray) -> None:
        at = _type_field(d, "blk.0.attn_norm.weight")  # an F32 (256,) tensor, relabelled Q8_0 with 256 values
        d[at - 8 : at] = struct.pack("<Q", 48)
        d[at : at + 4] = struct.pack("<I", int(Q.Q8_0))

    with pytest.raises(WeightsError, match="not a multiple of the block size 32"):
        load_gguf_state(_patched(tmp_path, write_tiny_llama(tmp_path / "f32.gguf"), patch))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_header_bytes_never_crash(tmp_path, good_file, flips):
    """Random byte changes in the header give a loaded model or a gptkit error, nothing else."""

    def patch(d: bytearray) -> None:
        for at, value in flips:
            d[at] = value

    try:
        config, state = load_gguf_state(_patched(tmp_path, good_file, patch))
        GPT4LMHeadModel.from_state_dict(config, state)
    except GPTKitError:
        pass


def test_block_count_disagrees_with_tensors(tmp_path):
    path = write_tiny_llama(tmp_path / "blocks.gguf", llama__block_count=3)
    with pytest.raises(WeightsError, match=r"block_count=3 but the file has tensors for 2 blocks \(0, 1\)"):
        load_gguf_state(path)
