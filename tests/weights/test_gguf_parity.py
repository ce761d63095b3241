"""Logit parity with transformers: tiny Llama (GQA, permuted Q/K), Qwen2 (q/k/v bias), GPT-2, bundled SmolLM2."""

from __future__ import annotations

import pytest
import torch
from test_gguf_builders import hf_gpt2_to_gguf, hf_llama_to_gguf, hf_metadata, write_gguf

from gptkit.modeling import GPT4LMHeadModel
from gptkit.weights.gguf_io import load_gguf_state

transformers = pytest.importorskip("transformers")


def _tiny_hf(kind: str, tie: bool):
    """A tiny random transformers model of ``kind`` (fp32, eval)."""
    torch.manual_seed(0)
    common = dict(vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-6, rope_theta=5000.0, tie_word_embeddings=tie)  # fmt: skip
    if kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
    elif kind == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
    else:
        config = transformers.GPT2Config(vocab_size=96, n_positions=64, n_embd=64, n_layer=2, n_head=4)
        model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():  # random biases and sharp attention, so every mapping really matters
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
            elif name.endswith(("q_proj.weight", "k_proj.weight", "c_attn.weight")):
                p.normal_(0, 0.3)
    return model.eval()


def _write_from_hf(tmp_path, model, arch: str):
    tensors = hf_gpt2_to_gguf(model) if arch == "gpt2" else hf_llama_to_gguf(model, permute=arch == "llama")
    return write_gguf(tmp_path / f"{arch}.gguf", arch, hf_metadata(model, arch), tensors)


@pytest.mark.parametrize(
    ("arch", "tie"), [("llama", False), ("llama", True), ("qwen2", True), ("gpt2", True)]
)
def test_tiny_model_logits_match_transformers(tmp_path, arch, tie):
    hf = _tiny_hf(arch, tie)
    config, state = load_gguf_state(_write_from_hf(tmp_path, hf, arch))
    assert config.tie_word_embeddings == tie
    ours = GPT4LMHeadModel.from_state_dict(config, state)
    ids = torch.randint(0, 96, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = hf(ids).logits, ours(ids).logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_unpermuted_llama_file_would_disagree(tmp_path):
    """The check has teeth: a Llama file written without llama.cpp's permute gives different logits."""
    hf = _tiny_hf("llama", False)
    path = write_gguf(
        tmp_path / "raw.gguf", "llama", hf_metadata(hf, "llama"), hf_llama_to_gguf(hf, permute=False)
    )
    ours = GPT4LMHeadModel.from_state_dict(*load_gguf_state(path))
    ids = torch.arange(20)[None]
    with torch.no_grad():
        assert (ours(ids).logits - hf(ids).logits).abs().max() > 1e-2


def _greedy_ours(model, prompt: torch.Tensor, steps: int) -> list[int]:
    """Greedy continuation with gptkit's KV cache."""
    cache = model.new_cache(1, prompt.shape[1] + steps)
    logits, out = model(prompt, cache=cache).logits, []
    for _ in range(steps):
        out.append(int(logits[0, -1].argmax()))
        logits = model(torch.tensor([[out[-1]]]), cache=cache).logits
    return out


def _greedy_hf(model, prompt: torch.Tensor, steps: int) -> list[int]:
    """Greedy continuation with transformers' KV cache (not model.generate: plain forwards)."""
    result, out = model(prompt, use_cache=True), []
    for _ in range(steps):
        out.append(int(result.logits[0, -1].argmax()))
        cache = {"cache": result.cache} if "cache" in result else {"past_key_values": result.past_key_values}
        result = model(torch.tensor([[out[-1]]]), use_cache=True, **cache)  # transformers 5 renamed the cache
    return out


@pytest.mark.slow
def test_bundled_smollm2_matches_transformers(bundled_gguf):
    pytest.importorskip("accelerate")
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        bundled_gguf.parent, gguf_file=bundled_gguf.name, dtype=torch.float32
    ).eval()
    ours = GPT4LMHeadModel.from_pretrained(bundled_gguf, dtype=torch.float32)  # the exact reference path
    prompt = torch.tensor([[1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28,
                            7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649]])  # fmt: skip
    with torch.no_grad():
        diff = (ours(prompt).logits - hf(prompt).logits).abs().max().item()
        assert diff <= 1e-3
        ours_tokens, hf_tokens = _greedy_ours(ours, prompt, 32), _greedy_hf(hf, prompt, 32)
    assert ours_tokens == hf_tokens
