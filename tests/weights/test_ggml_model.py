"""Quantized GGUF files load as they are by default (GGMLLinear / GGMLEmbedding, native kernels, the fused
decode block) and compute what the float32 reference path (``dtype=torch.float32``) computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from test_gguf_builders import (
    encode,
    hf_gpt2_to_gguf,
    hf_metadata,
    llama_metadata,
    random_llama_tensors,
    write_gguf,
    write_tiny_llama,
)

from gptkit import GPT4LMHeadModel, kernels
from gptkit.errors import ConfigError, WeightsError
from gptkit.model import fused
from gptkit.quant.ggml import GGMLEmbedding, GGMLLinear

TYPES = (Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.Q5_0, Q.Q4_K, Q.Q6_K)
needs_kernels = pytest.mark.skipif(kernels.ops() is None, reason="native kernels unavailable")


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def _decode_logits(model, ids):
    """Logits of each token fed one at a time through the KV cache (the decode path)."""
    cache = model.new_cache(ids.shape[0], ids.shape[1])
    with torch.no_grad():
        return torch.cat([model(ids[:, t : t + 1], cache=cache).logits for t in range(ids.shape[1])], 1)


# The fused op and the modules round the same floats slightly differently (norms, attention sums).
MODULES_TOLERANCE = 1e-3


def assert_logits_close(actual, expected, relative):
    scale = expected.abs().max()
    assert (actual - expected).abs().max() <= relative * scale, (
        (actual - expected).abs().max() / scale
    ).item()


@needs_kernels
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_default_load_keeps_blocks_and_matches_reference(tmp_path, qtype):
    path = write_tiny_llama(tmp_path / f"{qtype.name}.gguf", qtype)
    model = GPT4LMHeadModel.from_pretrained(path)
    reference = GPT4LMHeadModel.from_pretrained(path, dtype=torch.float32)
    assert model.quantization == "gguf" and getattr(reference, "quantization", None) is None
    assert isinstance(model.blocks[0].attn.qkv, GGMLLinear) and isinstance(model.embed, GGMLEmbedding)
    assert not any(isinstance(m, GGMLLinear) for m in reference.modules())
    ids = torch.randint(0, 32, (1, 12), generator=torch.Generator().manual_seed(0))
    expected = _logits(reference, ids)
    assert_logits_close(_logits(model, ids), expected, 1e-3)  # prefill: kernels (12 rows)
    assert_logits_close(_decode_logits(model, ids), expected, 1e-3)  # decode: the fused block op
    if qtype in (Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.Q5_0):  # realistic weights (K-quants here are random bytes)
        long = torch.randint(0, 32, (2, 60), generator=torch.Generator().manual_seed(1))
        assert_logits_close(_logits(model, long), _logits(reference, long), 2e-2)  # 120 rows: bf16 dense


@needs_kernels
@pytest.mark.parametrize("qtype", (Q.Q4_1, Q.Q6_K), ids=lambda t: t.name)
def test_fused_decode_block_equals_the_modules(tmp_path, qtype, monkeypatch):
    path = write_tiny_llama(tmp_path / "tiny.gguf", qtype)
    model = GPT4LMHeadModel.from_pretrained(path)
    ids = torch.randint(0, 32, (3, 12), generator=torch.Generator().manual_seed(1))
    fused_logits = _decode_logits(model, ids)
    calls = []
    real = fused.fused_decode
    monkeypatch.setattr("gptkit.model.decoder.fused_decode", lambda *a: calls.append(1))  # modules only
    modules_logits = _decode_logits(model, ids)
    assert calls  # the fast path was consulted and declined
    monkeypatch.setattr("gptkit.model.decoder.fused_decode", real)
    assert_logits_close(fused_logits, modules_logits, MODULES_TOLERANCE)


def _chunk_logits(model, ids, chunk):
    """Logits of ids fed ``chunk`` tokens at a time through the KV cache (speculative verification's shape)."""
    cache = model.new_cache(ids.shape[0], ids.shape[1])
    with torch.no_grad():
        steps = range(0, ids.shape[1], chunk)
        return torch.cat([model(ids[:, t : t + chunk], cache=cache).logits for t in steps], 1)


@needs_kernels
@pytest.mark.parametrize("qtype", (Q.Q4_1, Q.Q8_0, Q.Q6_K), ids=lambda t: t.name)
def test_fused_block_takes_a_few_tokens_per_row(tmp_path, qtype, monkeypatch):
    """T > 1 new tokens per row over a cache (a verification step) run the one fused op per block, with the
    causal mask among the new tokens, and equal the modules."""
    path = write_tiny_llama(tmp_path / "tiny.gguf", qtype)
    model = GPT4LMHeadModel.from_pretrained(path)
    ids = torch.randint(0, 32, (3, 12), generator=torch.Generator().manual_seed(3))
    real, fused_widths = fused.fused_decode, []

    def recording(block, x, inputs):
        out = real(block, x, inputs)
        if out is not None:
            fused_widths.append(x.shape[1])
        return out

    monkeypatch.setattr("gptkit.model.decoder.fused_decode", recording)
    fused_logits = _chunk_logits(model, ids, 5)  # chunks of 5, 5 and 2 tokens
    assert sorted(set(fused_widths)) == [2, 5]
    assert torch.equal(fused_logits, _decode_logits(model, ids))  # bit for bit: lossless speculation
    monkeypatch.setattr("gptkit.model.decoder.fused_decode", lambda *a: None)  # modules only
    assert_logits_close(fused_logits, _chunk_logits(model, ids, 5), MODULES_TOLERANCE)


@needs_kernels
def test_gpt2_layernorm_gelu_biases_take_the_fused_path(tmp_path):
    """GPT-2 (LayerNorm, GELU, biases, learned positions) quantized to Q8_0 through the same kernels."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=64, vocab_size=96)).eval()
    tensors = hf_gpt2_to_gguf(hf)
    quantized = {
        name: encode(array, Q.Q8_0) if array.ndim == 2 and name != "position_embd.weight" else (array, raw)
        for name, (array, raw) in tensors.items()
    }
    path = write_gguf(
        tmp_path / "gpt2.gguf", "gpt2", {"general.architecture": "gpt2", **hf_metadata(hf, "gpt2")}, quantized
    )
    model = GPT4LMHeadModel.from_pretrained(path)
    reference = GPT4LMHeadModel.from_pretrained(path, dtype=torch.float32)
    assert isinstance(model.blocks[0].mlp.up, GGMLLinear)
    ids = torch.randint(0, 96, (2, 10), generator=torch.Generator().manual_seed(2))
    assert_logits_close(_decode_logits(model, ids), _logits(reference, ids), 1e-3)


@needs_kernels
def test_generate_equals_reference_greedy(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf", Q.Q8_0)
    model, reference = (
        GPT4LMHeadModel.from_pretrained(path),
        GPT4LMHeadModel.from_pretrained(path, dtype="float32"),
    )
    ids = torch.tensor([[1, 5, 9, 3]])
    assert torch.equal(model.generate(ids, max_new_tokens=12), reference.generate(ids, max_new_tokens=12))


def test_save_pretrained_dequantizes_the_blocks(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf", Q.Q4_1)
    GPT4LMHeadModel.from_pretrained(path).save_pretrained(tmp_path / "hf")
    saved = GPT4LMHeadModel.from_pretrained(tmp_path / "hf", dtype="float32")
    reference = GPT4LMHeadModel.from_pretrained(path, dtype="float32")
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    assert torch.equal(_logits(saved, ids), _logits(reference, ids))


def test_explicit_reference_and_none_paths(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf", Q.Q4_0)
    for model in (
        GPT4LMHeadModel.from_pretrained(path, dtype="float32"),
        GPT4LMHeadModel.from_pretrained(path, quantize="none"),
    ):
        assert model.dtype == torch.float32
        assert not any(isinstance(m, GGMLLinear | GGMLEmbedding) for m in model.modules())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_block_scales_are_refused_at_load(tmp_path, bad):
    tensors = random_llama_tensors(Q.Q8_0)
    array, raw = tensors["blk.1.ffn_up.weight"]
    array = array.copy()
    array.reshape(-1, 34)[3, 0:2] = np.array([bad], dtype=np.float16).view(np.uint8)
    tensors["blk.1.ffn_up.weight"] = (array, raw)
    path = write_gguf(tmp_path / "bad.gguf", "llama", llama_metadata(), tensors)
    with pytest.raises(WeightsError, match="blk.1.ffn_up.weight.*NaN or infinite"):
        GPT4LMHeadModel.from_pretrained(path)


FALLBACK = """
import json, sys, warnings, torch
from gptkit import GPT4LMHeadModel
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = GPT4LMHeadModel.from_pretrained(sys.argv[1])
    ids = torch.tensor([[1, 4, 7, 2, 9]])
    out = model.generate(ids, max_new_tokens=6)
messages = [str(w.message) for w in caught if "native kernels" in str(w.message)]
print(json.dumps({"tokens": out.tolist(), "warnings": messages}))
"""


@pytest.mark.slow
def test_without_a_compiler_the_torch_path_runs_with_one_warning(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf", Q.Q4_1)
    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-such-compiler"),
        "GPTKIT_KERNELS_DIR": str(tmp_path / "kernels"),
    }
    run = subprocess.run(
        [sys.executable, "-c", FALLBACK, str(path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(result["warnings"]) == 1 and "no C++ compiler" in result["warnings"][0]
    reference = GPT4LMHeadModel.from_pretrained(path, dtype="float32")
    assert result["tokens"] == reference.generate(torch.tensor([[1, 4, 7, 2, 9]]), max_new_tokens=6).tolist()


PORTABLE = """
import json, sys, torch
from gptkit import GPT4LMHeadModel, kernels
model = GPT4LMHeadModel.from_pretrained(sys.argv[1])
ids = torch.tensor([[1, 4, 7, 2, 9]])
cache = model.new_cache(1, 8)
with torch.no_grad():
    logits = torch.cat([model(ids[:, t : t + 1], cache=cache).logits for t in range(5)], 1)
print(json.dumps({"isa": kernels.isa_name(), "logits": logits.flatten().tolist()}))
"""


@needs_kernels
@pytest.mark.slow
def test_forced_portable_kernels_give_the_same_logits(tmp_path):
    """GPTKIT_KERNELS=portable (a CPU without AVX-512 or AVX2) runs the plain C++ build: same results."""
    path = write_tiny_llama(tmp_path / "tiny.gguf", Q.Q4_1)
    outputs = {}
    for choice in ("portable", "auto"):
        env = {**os.environ, "GPTKIT_KERNELS": choice}
        run = subprocess.run(
            [sys.executable, "-c", PORTABLE, str(path)], env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr
        outputs[choice] = json.loads(run.stdout.strip().splitlines()[-1])
    assert outputs["portable"]["isa"] == "portable" and outputs["auto"]["isa"] == kernels.isa_name()
    assert_logits_close(
        torch.tensor(outputs["portable"]["logits"]),
        torch.tensor(outputs["auto"]["logits"]),
        MODULES_TOLERANCE,
    )


def test_unknown_kernel_choice_is_refused(monkeypatch):
    monkeypatch.setenv("GPTKIT_KERNELS", "sse9")
    with pytest.raises(ConfigError, match="GPTKIT_KERNELS='sse9'"):
        kernels.requested()


def test_gguf_blocks_are_refused_for_a_model_that_is_not_gguf(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf", Q.Q8_0)
    GPT4LMHeadModel.from_pretrained(path, dtype="float32").save_pretrained(tmp_path / "hf")
    with pytest.raises(ConfigError, match='quantize="gguf".*not a GGUF file'):
        GPT4LMHeadModel.from_pretrained(tmp_path / "hf", quantize="gguf")
    assert GPT4LMHeadModel.from_pretrained(path, quantize="gguf").quantization == "gguf"
