"""Dequantization parity with the gguf package, header parsing, config from metadata, raw tensor access."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from test_gguf_builders import ALL_TYPES, llama_metadata, llama_shapes, write_gguf, write_tiny_llama

from gptkit.config import MLP, Norm, Positions
from gptkit.errors import ConfigError
from gptkit.modeling import GPT4LMHeadModel
from gptkit.quant.gguf_dequant import dequantize
from gptkit.weights.gguf_config import config_from_gguf
from gptkit.weights.gguf_file import read_header, read_metadata
from gptkit.weights.gguf_io import iter_gguf_tensors, load_gguf_state, unpermute_rows


@pytest.fixture(scope="module", params=ALL_TYPES, ids=lambda t: t.name)
def typed_file(request, tmp_path_factory):
    """A tiny Llama whose 2-D weights are all of one ggml type."""
    path = tmp_path_factory.mktemp("dequant") / f"tiny-{request.param.name}.gguf"
    return request.param, write_tiny_llama(path, request.param)


def test_dequantize_matches_gguf_reference_bit_for_bit(typed_file):
    qtype, path = typed_file
    reference = {t.name: t for t in gguf.GGUFReader(path).tensors}
    seen_types = set()
    for tensor in iter_gguf_tensors(path):
        ref = reference[tensor.name]
        expected = torch.from_numpy(np.array(gguf.quants.dequantize(ref.data, ref.tensor_type)))
        ours = tensor.dequantize()
        assert ours.dtype == torch.float32 and tuple(ours.shape) == tensor.shape
        assert torch.equal(ours, expected.float()), tensor.name
        seen_types.add(tensor.ggml_type)
    assert qtype in seen_types


def test_typed_file_loads_into_a_model(typed_file):
    qtype, path = typed_file
    config, state = load_gguf_state(path)
    model = GPT4LMHeadModel.from_state_dict(config, state)
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 32) and torch.isfinite(logits).all()
    assert config.extra["source"] == "gguf" and config.extra["gguf_architecture"] == "llama"


def test_gguf_fallback_for_types_without_a_torch_kernel():
    """IQ4_NL has no torch kernel: the gguf package's numpy code dequantizes it."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[Q.IQ4_NL]
    raw = np.random.default_rng(0).integers(0, 256, (4, type_size), dtype=np.uint8)
    raw[:, :2] = np.full((4, 1), 0.01, np.float16).view(np.uint8)
    expected = torch.from_numpy(gguf.quants.dequantize(raw, Q.IQ4_NL).reshape(4 * block_size))
    assert torch.equal(dequantize(torch.from_numpy(raw.reshape(-1)), Q.IQ4_NL, (4 * block_size,)), expected)


def test_raw_tensors_keep_quantized_blocks(tmp_path):
    path = write_tiny_llama(tmp_path / "q8.gguf", Q.Q8_0)
    tensors = {t.name: t for t in iter_gguf_tensors(path)}
    q = tensors["blk.0.attn_q.weight"]
    assert q.ggml_type == Q.Q8_0 and q.shape == (256, 256)
    assert q.data.dtype == torch.uint8 and q.data.numel() == 256 * 256 // 32 * 34
    assert tensors["output_norm.weight"].ggml_type == Q.F32


def test_unpermute_inverts_llama_cpp_permute():
    from test_gguf_builders import llama_cpp_permute

    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    assert torch.equal(unpermute_rows(torch.from_numpy(llama_cpp_permute(w, 8)), 8), torch.from_numpy(w))
    b = np.arange(2 * 16, dtype=np.float32)  # biases are permuted the same way
    assert torch.equal(unpermute_rows(torch.from_numpy(llama_cpp_permute(b, 2)), 2), torch.from_numpy(b))


# ---- header ----------------------------------------------------------------------------------------
def reference_metadata(reader) -> dict:
    """The gguf package's reading of every metadata key (GGUF.* header fields left out)."""
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def test_header_matches_gguf_reader(tmp_path):
    meta = llama_metadata() | {
        "tokenizer.ggml.tokens": ["a", "b", "ü"],
        "x.flag": True,
        "x.floats": [0.5, 1.5],
    }
    path = write_gguf(tmp_path / "h.gguf", "llama", meta, {"w": (np.ones((2, 32), np.float32), None)})
    header = read_header(path)
    reader = gguf.GGUFReader(path)
    assert read_metadata(path) == reference_metadata(reader)
    assert [(t.name, t.dims, t.offset) for t in header.tensors] == [
        (t.name, tuple(t.shape.tolist()), t.data_offset) for t in reader.tensors
    ]
    assert header.tensors[0].shape == (2, 32)


@pytest.mark.slow
def test_bundled_header_matches_gguf_reader(bundled_gguf):
    header = read_header(bundled_gguf)
    assert header.metadata == reference_metadata(gguf.GGUFReader(bundled_gguf))
    assert len(header.tensors) == 272


# ---- config ----------------------------------------------------------------------------------------
def test_llama_config_from_metadata():
    names = set(llama_shapes())
    config = config_from_gguf(llama_metadata() | {"general.file_type": 15}, names)
    sizes = (config.n_layer, config.n_head, config.kv_heads, config.n_embd, config.ffn_dim)
    assert sizes == (2, 4, 2, 256, 512)
    assert config.positions is Positions.ROPE and config.norm is Norm.RMSNORM and config.mlp is MLP.SWIGLU
    assert not config.tie_word_embeddings and not config.bias and not config.has_qkv_bias
    assert config.extra["quantization"] == "Q4_K_M" and config.eos_token_id == 2
    tied = config_from_gguf(llama_metadata(), names - {"output.weight"})
    assert tied.tie_word_embeddings


def test_qwen2_and_gpt2_switches():
    qwen = config_from_gguf(llama_metadata("qwen2"))
    assert qwen.has_qkv_bias and not qwen.bias and qwen.positions is Positions.ROPE
    gpt2 = {"gpt2.block_count": 2, "gpt2.context_length": 64, "gpt2.embedding_length": 32,
            "gpt2.attention.head_count": 4, "gpt2.attention.layer_norm_epsilon": 1e-5,
            "general.architecture": "gpt2", "tokenizer.ggml.tokens": ["a"] * 50}  # fmt: skip
    config = config_from_gguf(gpt2)
    assert config.positions is Positions.LEARNED and config.norm is Norm.LAYERNORM and config.mlp is MLP.GELU
    assert config.bias and config.vocab_size == 50 and config.ffn_dim == 128


def test_rope_scaling_and_window():
    meta = llama_metadata() | {"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 4.0,
                               "llama.attention.sliding_window": 16}  # fmt: skip
    config = config_from_gguf(meta)
    assert config.rope_scaling == {"type": "linear", "factor": 4.0} and config.sliding_window == 16


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"general.architecture": "mamba"}, "architecture 'mamba' is not supported"),
        ({"llama.rope.dimension_count": 32}, "partial rotary"),
        ({"llama.rope.scaling.type": "yarn"}, "rope scaling type 'yarn'"),
        ({"llama.block_count": None}, "llama.block_count"),
        ({"llama.embedding_length": 250}, "not divisible"),
    ],
)
def test_config_refuses_unsupported_metadata(change, message):
    meta = llama_metadata() | {"general.architecture": "llama"} | change
    meta = {k: v for k, v in meta.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        config_from_gguf(meta)


def test_config_refuses_rope_frequency_tensor():
    with pytest.raises(ConfigError, match="rope_freqs"):
        config_from_gguf(llama_metadata() | {"general.architecture": "llama"}, {"rope_freqs.weight"})
