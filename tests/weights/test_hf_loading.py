"""Hugging Face checkpoints: logits parity with transformers, round trips, shards and bf16."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402

from gptkit import GPT4LMHeadModel  # noqa: E402
from gptkit.quant.ggml import dense_dtype  # noqa: E402
from gptkit.weights.safetensors_io import INDEX_FILE, load_hf_state  # noqa: E402

REFERENCE = torch.float32  # parity with transformers runs on the float32 reference path

VOCAB, SEQ = 101, 24
LLAMA_SIZES = dict(
    vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=64,
)  # fmt: skip
LLAMA3_ROPE = {
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16, "rope_theta": 10000.0,
}  # fmt: skip

CASES = {
    "gpt2": lambda: transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    ),
    "gpt2-exact-gelu-untied": lambda: transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=VOCAB,
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_inner=40,
            activation_function="gelu",
            tie_word_embeddings=False,
        )  # fmt: skip
    ),
    "llama-gqa-untied": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA_SIZES)),
    "llama-mqa-tied": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**{**LLAMA_SIZES, "num_key_value_heads": 1}, tie_word_embeddings=True)
    ),
    "llama-bias-headdim": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**LLAMA_SIZES, attention_bias=True, mlp_bias=True, head_dim=16)
    ),
    "llama-rope-linear": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            **LLAMA_SIZES, rope_parameters={"rope_type": "linear", "factor": 3.0, "rope_theta": 500.0}
        )
    ),
    "llama-rope-llama3": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**LLAMA_SIZES, rope_parameters=LLAMA3_ROPE)
    ),
    "qwen2": lambda: transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**LLAMA_SIZES)),
    "qwen2-window": lambda: transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(
            **LLAMA_SIZES, use_sliding_window=True, sliding_window=8, max_window_layers=0
        )
    ),
    "mistral-window": lambda: transformers.MistralForCausalLM(
        transformers.MistralConfig(**LLAMA_SIZES, sliding_window=8)
    ),
}


def randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter (biases and norm weights too) drawn at random, so a wrong mapping shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model.eval()


@pytest.fixture(scope="module", params=list(CASES))
def checkpoint(request, tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """A tiny random transformers model and the directory it saved itself to (safetensors)."""
    torch.manual_seed(0)
    hf_model = randomized(CASES[request.param](), seed=len(request.param))
    directory = tmp_path_factory.mktemp(request.param)
    hf_model.save_pretrained(directory, safe_serialization=True)
    return hf_model, directory


def token_ids(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, SEQ), generator=torch.Generator().manual_seed(seed))


def right_padded_mask(lengths: list[int]) -> torch.Tensor:
    return (torch.arange(SEQ)[None, :] < torch.tensor(lengths)[:, None]).long()


@torch.no_grad()
def test_logits_match_transformers(checkpoint):
    hf_model, directory = checkpoint
    model = GPT4LMHeadModel.from_pretrained(directory, dtype=REFERENCE)
    ids = token_ids()
    assert (model(ids).logits - hf_model(ids).logits).abs().max() <= 1e-4


@torch.no_grad()
def test_padded_batch_matches_transformers_on_real_tokens(checkpoint):
    hf_model, directory = checkpoint
    model = GPT4LMHeadModel.from_pretrained(directory, dtype=REFERENCE)
    ids, lengths = token_ids(batch=3, seed=2), [SEQ, 15, 9]
    mask = right_padded_mask(lengths)
    ours, theirs = model(ids, attention_mask=mask).logits, hf_model(ids, attention_mask=mask).logits
    for row, length in enumerate(lengths):
        assert (ours[row, :length] - theirs[row, :length]).abs().max() <= 1e-4


@pytest.mark.parametrize("case", ["qwen2-window", "mistral-window"])
@torch.no_grad()
def test_sliding_window_is_exercised(case, tmp_path):
    """Window 8 over 24 tokens changes the logits, so the parity above really covers the window."""
    hf_model = randomized(CASES[case](), seed=7)
    hf_model.save_pretrained(tmp_path)
    model = GPT4LMHeadModel.from_pretrained(tmp_path, dtype=REFERENCE)
    assert model.config.sliding_window == 8 < SEQ
    unwindowed = GPT4LMHeadModel.from_state_dict(
        model.config.replace(sliding_window=None), dict(model.named_parameters())
    )
    ids = token_ids()
    assert (model(ids).logits - hf_model(ids).logits).abs().max() <= 1e-4
    assert (unwindowed(ids).logits - hf_model(ids).logits).abs().max() > 1e-2


@torch.no_grad()
def test_saved_model_loads_in_transformers(checkpoint, tmp_path):
    _, directory = checkpoint
    model = GPT4LMHeadModel.from_pretrained(directory, dtype=REFERENCE)
    model.save_pretrained(tmp_path)
    reloaded, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids = token_ids()
    assert (reloaded.eval()(ids).logits - model(ids).logits).abs().max() <= 1e-5
    assert json.loads((tmp_path / "generation_config.json").read_text()).get("eos_token_id") == (
        model.config.eos_token_id
    )


def test_saved_model_reloads_identically(checkpoint, tmp_path):
    _, directory = checkpoint
    model = GPT4LMHeadModel.from_pretrained(directory, dtype=REFERENCE)
    model.save_pretrained(tmp_path)
    again = GPT4LMHeadModel.from_pretrained(tmp_path, dtype=REFERENCE)
    assert again.config == model.config
    theirs = dict(again.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(param, theirs[name]), name


@torch.no_grad()
def test_sharded_transformers_checkpoint_loads(tmp_path):
    hf_model = randomized(CASES["llama-gqa-untied"](), seed=3)
    hf_model.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="50KB")
    assert (tmp_path / INDEX_FILE).is_file() and len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model = GPT4LMHeadModel.from_pretrained(tmp_path, dtype=REFERENCE)
    ids = token_ids()
    assert (model(ids).logits - hf_model(ids).logits).abs().max() <= 1e-4


@torch.no_grad()
def test_our_sharded_save_loads_everywhere(tmp_path):
    hf_model = randomized(CASES["qwen2"](), seed=4)
    hf_model.save_pretrained(tmp_path / "hf")
    model = GPT4LMHeadModel.from_pretrained(tmp_path / "hf", dtype=REFERENCE)
    from gptkit.weights.safetensors_io import save_pretrained

    save_pretrained(model, tmp_path / "ours", max_shard_size="20KB")
    assert len(list((tmp_path / "ours").glob("model-*-of-*.safetensors"))) > 1
    ids = token_ids()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert (reloaded(ids).logits - model(ids).logits).abs().max() <= 1e-5
    assert (
        GPT4LMHeadModel.from_pretrained(tmp_path / "ours", dtype=REFERENCE)(ids).logits - model(ids).logits
    ).abs().max() == 0


@torch.no_grad()
def test_bf16_checkpoint_loads(tmp_path):
    hf_model = randomized(CASES["llama-gqa-untied"](), seed=5)
    with torch.no_grad():  # make every weight exactly representable in bf16
        for param in hf_model.parameters():
            param.copy_(param.to(torch.bfloat16))
    hf_model.to(torch.bfloat16).save_pretrained(tmp_path)
    _, state = load_hf_state(tmp_path)
    assert all(t.dtype == torch.bfloat16 for t in state.values())
    assert GPT4LMHeadModel.from_pretrained(tmp_path, dtype="bfloat16").dtype == torch.bfloat16
    assert GPT4LMHeadModel.from_pretrained(tmp_path).dtype == dense_dtype()  # bf16 where the CPU has it
    model = GPT4LMHeadModel.from_pretrained(tmp_path, dtype="float32")  # the reference path
    assert model.dtype == torch.float32
    reference = CASES["llama-gqa-untied"]().eval()  # fp32, including its RoPE buffers
    reference.load_state_dict({k: v.float() for k, v in hf_model.state_dict().items()})
    ids = token_ids()
    assert (model(ids).logits - reference(ids).logits).abs().max() <= 1e-4


@torch.no_grad()
def test_base_model_names_and_buffers_are_accepted(tmp_path):
    """Original GPT-2 checkpoints store names without 'transformer.' and carry causal-mask buffers."""
    hf_model = randomized(CASES["gpt2"](), seed=6)
    hf_model.save_pretrained(tmp_path)
    state = {
        k.removeprefix("transformer."): v for k, v in hf_model.state_dict().items() if k != "lm_head.weight"
    }
    state.update({f"h.{i}.attn.bias": torch.tril(torch.ones(1, 1, 64, 64)) for i in range(2)})
    (tmp_path / "model.safetensors").unlink()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    model = GPT4LMHeadModel.from_pretrained(tmp_path, dtype=REFERENCE)
    ids = token_ids()
    assert (model(ids).logits - hf_model(ids).logits).abs().max() <= 1e-4
