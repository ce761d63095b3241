"""Streaming loads (one tensor at a time, quantized as read) equal the whole-state-dict path, use less memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from gguf import GGMLQuantizationType as Q
from test_gguf_builders import llama_metadata, random_llama_tensors, write_gguf, write_tiny_llama

from gptkit import ConfigError, GPT4Config, GPT4LMHeadModel, WeightsError
from gptkit.model.decoder import parameter_shapes
from gptkit.quant import SCHEMES, Int8Linear, quantize_model
from gptkit.weights import loading
from gptkit.weights.gguf_io import iter_gguf_tensors, load_gguf_state, open_gguf_state
from gptkit.weights.safetensors_io import load_hf_state, save_pretrained

HF_LLAMA = GPT4Config(
    vocab_size=80, n_layer=2, n_head=4, n_kv_head=2, n_embd=128, intermediate_size=256, context_length=32,
    positions="rope", norm="rmsnorm", mlp="swiglu", bias=True, tie_word_embeddings=False,
)  # fmt: skip
HF_GPT2 = GPT4Config(vocab_size=90, n_layer=2, n_head=4, n_embd=128, context_length=32)  # biases, tied head
SOURCES = ["gguf-q8_0", "gguf-q4_k-tied", "hf-llama-bias", "hf-gpt2-tied-bf16"]
DTYPES = [torch.float32, torch.bfloat16]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints whose every linear takes each scheme (in_features are multiples of 128)."""
    root = tmp_path_factory.mktemp("streaming")
    torch.manual_seed(0)
    save_pretrained(GPT4LMHeadModel(HF_LLAMA), root / "hf-llama-bias")
    save_pretrained(GPT4LMHeadModel(HF_GPT2).to(torch.bfloat16), root / "hf-gpt2-tied-bf16")
    return {
        "gguf-q8_0": write_tiny_llama(root / "q8_0.gguf", Q.Q8_0),
        "gguf-q4_k-tied": write_tiny_llama(root / "q4_k.gguf", Q.Q4_K, drop=("output.weight",)),
        "hf-llama-bias": root / "hf-llama-bias",
        "hf-gpt2-tied-bf16": root / "hf-gpt2-tied-bf16",
    }


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The parameter names that from_pretrained reads from the weights during the test."""
    names: list[str] = []
    original = loading.open_weights

    def counting(source):
        config, shapes, read = original(source)
        return config, shapes, lambda name: (names.append(name), read(name))[1]

    monkeypatch.setattr(loading, "open_weights", counting)
    return names


def state_dict_path(path: Path, scheme: str | None, dtype: torch.dtype) -> GPT4LMHeadModel:
    """gptkit's loader before streaming: the whole fp32 state dict, the model in ``dtype``, then the swap."""
    config, state = load_gguf_state(path) if path.suffix == ".gguf" else load_hf_state(path)
    model = GPT4LMHeadModel.from_state_dict(config, state, dtype=dtype)
    return model if scheme is None else quantize_model(model, scheme)


def assert_identical(actual: torch.nn.Module, expected: torch.nn.Module) -> None:
    """Same modules, same parameters and buffers (values, dtypes, grad flags, sharing), same logits."""
    modules = [(n, type(m), m.training) for n, m in expected.named_modules()]
    assert [(n, type(m), m.training) for n, m in actual.named_modules()] == modules
    for kind in ("named_parameters", "named_buffers"):
        got = dict(getattr(actual, kind)(remove_duplicate=False))
        want = dict(getattr(expected, kind)(remove_duplicate=False))
        assert got.keys() == want.keys(), kind
        for name, tensor in want.items():
            assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
            assert got[name].requires_grad == tensor.requires_grad, name
    assert _shared_storage(actual) == _shared_storage(expected)
    assert not actual.training and getattr(actual, "quantization", None) == getattr(
        expected, "quantization", None
    )
    ids = torch.arange(12).reshape(2, 6) % actual.config.vocab_size
    with torch.inference_mode():
        assert torch.equal(actual(ids).logits, expected(ids).logits)


def _shared_storage(model: torch.nn.Module) -> list[list[str]]:
    """Groups of parameter names that share memory (a tied head without quantization)."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(p.data_ptr(), []).append(name)
    return sorted(names for names in groups.values() if len(names) > 1)


# ---- the same model as before --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scheme", [None, *SCHEMES])
@pytest.mark.parametrize("source", SOURCES)
def test_streaming_load_equals_the_state_dict_path(sources, reads, single_thread, source, scheme, dtype):
    path = sources[source]
    model = GPT4LMHeadModel.from_pretrained(path, quantize=scheme, dtype=dtype)
    assert_identical(model, state_dict_path(path, scheme, dtype))
    assert sorted(reads) == sorted(parameter_shapes(model.config))  # each once, a tied embedding too


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("source", SOURCES)
def test_fp32_streaming_equals_quantizing_the_loaded_model(sources, single_thread, source, scheme):
    path = sources[source]
    model = GPT4LMHeadModel.from_pretrained(path, quantize=scheme)
    reference = GPT4LMHeadModel.from_pretrained(path, dtype=torch.float32)
    assert_identical(model, quantize_model(reference, scheme, torch.float32))


def test_tied_head_gets_an_int8_copy_and_the_embedding_keeps_its_precision(sources, reads):
    model = GPT4LMHeadModel.from_pretrained(sources["gguf-q4_k-tied"], quantize="int4", dtype=torch.bfloat16)
    assert isinstance(model.lm_head, Int8Linear) and model.embed.weight.dtype == torch.bfloat16
    _, state = load_gguf_state(sources["gguf-q4_k-tied"])
    assert torch.equal(model.embed.weight, state["embed.weight"].to(torch.bfloat16))
    assert reads.count("embed.weight") == 1 and "lm_head.weight" not in reads


# ---- errors come first, unchanged ----------------------------------------------------------------------
@pytest.mark.parametrize("source", SOURCES)
def test_unknown_scheme_is_refused_before_any_tensor_is_read(sources, reads, source):
    with pytest.raises(ConfigError, match="unknown quantization scheme 'int2'"):
        GPT4LMHeadModel.from_pretrained(sources[source], quantize="int2")
    assert reads == []


def test_group_size_that_does_not_divide_is_refused_before_any_tensor_is_read(tmp_path, reads):
    sizes = {"ffn": 320}  # mlp.down has 320 inputs: int4-g64 fits, int4-g128 does not
    path = write_gguf(
        tmp_path / "ffn320.gguf", "llama", llama_metadata(**sizes), random_llama_tensors(Q.F32, **sizes)
    )
    with pytest.raises(ConfigError) as streamed:
        GPT4LMHeadModel.from_pretrained(path, quantize="int4-g128")
    assert reads == []
    with pytest.raises(ConfigError) as before:
        state_dict_path(path, "int4-g128", torch.float32)
    assert str(streamed.value) == str(before.value) and "in_features=320" in str(streamed.value)
    assert_identical(
        GPT4LMHeadModel.from_pretrained(path, quantize="int4-g64"),
        state_dict_path(path, "int4-g64", torch.float32),
    )


def test_bad_dtype_is_refused_before_any_tensor_is_read(sources, reads):
    with pytest.raises(ValueError, match="unknown dtype 'float64'"):
        GPT4LMHeadModel.from_pretrained(sources["gguf-q8_0"], dtype="float64", quantize="int4")
    assert reads == []


def test_a_bad_file_is_still_a_weights_error_before_the_scheme_is_checked(sources, tmp_path):
    data = sources["gguf-q8_0"].read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: len(data) - 1000])
    for scheme in ("int4", "int2"):
        with pytest.raises(WeightsError, match="truncated"):
            GPT4LMHeadModel.from_pretrained(truncated, quantize=scheme)


def test_an_hf_checkpoint_missing_a_tensor_is_refused_before_any_read(sources, tmp_path, reads):
    from safetensors.torch import load_file, save_file

    directory = tmp_path / "hf"
    directory.mkdir()
    (directory / "config.json").write_text((sources["hf-llama-bias"] / "config.json").read_text())
    tensors = load_file(sources["hf-llama-bias"] / "model.safetensors")
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="lacks 1 tensor"):
        GPT4LMHeadModel.from_pretrained(directory, quantize="int4")
    assert reads == []


# ---- memory ---------------------------------------------------------------------------------------------
def test_a_parameter_read_again_after_its_file_pages_were_dropped_is_unchanged(tmp_path):
    path = write_tiny_llama(tmp_path / "q4_k.gguf", Q.Q4_K)
    assert any(t.data.numel() >= 3 * 4096 for t in iter_gguf_tensors(path))  # whole pages get dropped
    _, shapes, read = open_gguf_state(path)
    first = {name: read(name) for name in shapes}
    for name in shapes:
        assert torch.equal(read(name), first[name]), name
    assert all(torch.equal(first[name], value) for name, value in load_gguf_state(path)[1].items())


PEAK_SCRIPT = """
import re, sys
import torch
from gptkit import GPT4LMHeadModel
from gptkit.quant import quantize_model
from gptkit.weights.gguf_io import load_gguf_state

def peak_kib():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))

mode, path = sys.argv[1:]
before = peak_kib()
if mode == "state-dict":  # gptkit's loader before streaming
    config, state = load_gguf_state(path)
    model = GPT4LMHeadModel.from_state_dict(config, state, dtype=torch.bfloat16)
    del state
    quantize_model(model, "int4")
else:
    model = GPT4LMHeadModel.from_pretrained(path, quantize="int4", dtype=torch.bfloat16)
print(before, peak_kib())
"""


def _peak_growth_mib(mode: str, path: Path) -> float:
    """How far a fresh process's peak RSS (VmHWM) rises while it loads ``path`` int4 + bf16 by ``mode``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, mode, str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    before, after = map(int, result.stdout.split())
    return (after - before) / 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM comes from Linux's /proc")
def test_streaming_int4_load_of_smollm2_peaks_far_below_the_state_dict_path(bundled_gguf):
    state_dict = _peak_growth_mib("state-dict", bundled_gguf)
    streaming = _peak_growth_mib("streaming", bundled_gguf)
    assert streaming < 0.7 * state_dict, (
        f"peak RSS growth: streaming {streaming:.0f} MiB, state dict {state_dict:.0f} MiB"
    )
