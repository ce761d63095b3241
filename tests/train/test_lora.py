"""LoRA: identity at init, only adapters train, training lowers the loss, merging is exact, memory is small."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from gptkit import ConfigError, GPT4Config, GPT4LMHeadModel
from gptkit.train.lora import (
    LoRALinear,
    apply_lora,
    load_lora_state_dict,
    lora_parameters,
    lora_state_dict,
    merge_lora,
)

VARIANTS = {
    "gpt2-like": dict(positions="learned", norm="layernorm", mlp="gelu", bias=True),
    "llama-like": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2),
    "untied-qkv-bias": dict(
        positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, qkv_bias=True, tie_word_embeddings=False
    ),
}
VOCAB = 61


def tiny(**switches) -> GPT4LMHeadModel:
    torch.manual_seed(0)
    base = dict(vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, intermediate_size=48, context_length=64)
    return GPT4LMHeadModel(GPT4Config(**{**base, **switches})).eval()


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def switches(request) -> dict:
    return VARIANTS[request.param]


def token_batch(seed: int = 1, shape=(4, 16)) -> torch.Tensor:
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def train_steps(model: nn.Module, ids: torch.Tensor, steps: int, lr: float = 1e-2) -> list[float]:
    """AdamW on the LoRA parameters; the loss before each step."""
    optimizer = torch.optim.AdamW(lora_parameters(model), lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    for _ in range(steps):
        loss = model(ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def test_fresh_lora_model_computes_the_same_logits(switches):
    model = tiny(**switches)
    ids = token_batch()
    before = model(ids).logits
    apply_lora(model, rank=4, alpha=8)
    assert torch.equal(model(ids).logits, before)  # B = 0: the update is exactly zero


def test_targets_swapped_and_only_adapters_train(switches):
    model = apply_lora(tiny(**switches), rank=4)
    swapped = {name for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    mlp = ("gate_up", "down") if switches["mlp"] == "swiglu" else ("up", "down")
    expected = {f"blocks.{i}.{part}" for i in range(2) for part in ("attn.qkv", "attn.proj")}
    expected |= {f"blocks.{i}.mlp.{part}" for i in range(2) for part in mlp}
    assert swapped == expected
    assert isinstance(model.lm_head, nn.Linear) and not isinstance(model.lm_head, LoRALinear)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{m}.{ab}" for m in expected for ab in ("lora_A", "lora_B")}
    assert {id(p) for p in lora_parameters(model)} == {id(p) for p in model.parameters() if p.requires_grad}
    layer = model.blocks[0].attn.qkv
    assert layer.lora_A.shape == (4, 32) and layer.lora_B.shape == (layer.out_features, 4)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0


def test_base_weight_names_are_unchanged_so_base_checkpoints_load(switches):
    plain = tiny(**switches)
    model = apply_lora(tiny(**switches))
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and all(name.endswith((".lora_A", ".lora_B")) for name in missing)


def test_targets_select_by_name_suffix():
    model = apply_lora(tiny(**VARIANTS["llama-like"]), targets=("attn.qkv",))
    assert {n for n, m in model.named_modules() if isinstance(m, LoRALinear)} == {
        "blocks.0.attn.qkv",
        "blocks.1.attn.qkv",
    }
    with pytest.raises(ConfigError, match="no nn.Linear"):
        apply_lora(tiny(), targets=("q_proj",))
    with pytest.raises(ConfigError, match="already has LoRA"):
        apply_lora(model)
    with pytest.raises(ConfigError, match="rank"):
        apply_lora(tiny(), rank=0)


def test_training_lowers_the_loss_and_moves_only_adapters(switches):
    model = apply_lora(tiny(**switches), rank=8, alpha=16)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    ids = token_batch(seed=2)
    losses = train_steps(model, ids, steps=30)
    assert losses[-1] < 0.93 * losses[0], losses  # frozen tiny random base: ~12% in 30 steps
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name


def test_merge_is_exact_and_leaves_plain_linears(switches):
    model = apply_lora(tiny(**switches), rank=4, alpha=8)
    ids = token_batch()
    train_steps(model, token_batch(seed=3), steps=5)
    model.eval()
    with torch.no_grad():
        adapted = model(ids).logits
        merge_lora(model)
        merged = model(ids).logits
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert type(model.blocks[0].attn.qkv) is nn.Linear
    assert not any("lora" in name for name in model.state_dict())
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)
    assert not torch.allclose(adapted, tiny(**switches)(ids).logits, atol=1e-3)  # training changed it


def test_merged_model_saves_and_loads_back(tmp_path, switches):
    model = apply_lora(tiny(**switches), rank=4)
    train_steps(model, token_batch(seed=4), steps=5)
    merge_lora(model).eval()
    model.save_pretrained(tmp_path)
    loaded = GPT4LMHeadModel.from_pretrained(tmp_path, dtype="float32")
    ids = token_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=1e-5, rtol=0)


def test_tied_embeddings_stay_tied(tmp_path):
    model = tiny(tie_word_embeddings=True)
    apply_lora(model)
    assert model.lm_head.weight is model.embed.weight and not model.embed.weight.requires_grad
    train_steps(model, token_batch(), steps=2)
    merge_lora(model)
    assert model.lm_head.weight is model.embed.weight
    model.save_pretrained(tmp_path)
    loaded = GPT4LMHeadModel.from_pretrained(tmp_path, dtype="float32")
    assert loaded.lm_head.weight is loaded.embed.weight
    with pytest.raises(ConfigError, match="tied"):
        apply_lora(tiny(tie_word_embeddings=True), targets=("lm_head",))


def test_untied_lm_head_can_be_a_target():
    model = apply_lora(tiny(tie_word_embeddings=False), targets=("lm_head",))
    assert isinstance(model.lm_head, LoRALinear) and not model.embed.weight.requires_grad


def test_adapter_state_dict_round_trip():
    model = apply_lora(tiny(), rank=4)
    train_steps(model, token_batch(), steps=3)
    state = lora_state_dict(model)
    assert set(state) == {n for n, _ in model.named_parameters() if n.endswith((".lora_A", ".lora_B"))}
    fresh = apply_lora(tiny(), rank=4)
    load_lora_state_dict(fresh, state)
    ids = token_batch()
    with torch.no_grad():
        assert torch.equal(fresh.eval()(ids).logits, model.eval()(ids).logits)
    with pytest.raises(ConfigError, match="missing"):
        load_lora_state_dict(fresh, dict(list(state.items())[1:]))


def test_dropout_only_touches_the_adapter_path_in_training():
    layer = LoRALinear(nn.Linear(8, 8), rank=2, dropout=0.5)
    x = torch.randn(3, 8)
    base = nn.functional.linear(x, layer.weight, layer.bias)
    assert torch.equal(layer(x), base)  # B = 0, dropout or not
    nn.init.normal_(layer.lora_B)
    layer.eval()
    first = layer(x)
    assert torch.equal(first, layer(x))
    layer.train()
    assert not torch.equal(layer(x), first)


def test_bf16_autocast_and_bf16_weights():
    model = apply_lora(tiny(**VARIANTS["llama-like"]), rank=4)
    ids = token_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    grads = [p.grad for p in lora_parameters(model)]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    half = apply_lora(tiny(**VARIANTS["llama-like"]).to(torch.bfloat16), rank=4)
    assert half.blocks[0].attn.qkv.lora_A.dtype == torch.float32  # adapters train in fp32
    logits = half(ids).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    merge_lora(half)
    assert half.blocks[0].attn.qkv.weight.dtype == torch.bfloat16


PEAK_RSS_SCRIPT = textwrap.dedent(
    """
    import json, torch
    from gptkit import GPT4LMHeadModel
    from gptkit.train.lora import apply_lora, lora_parameters

    model = apply_lora(GPT4LMHeadModel.from_pretrained("smollm2-135m-instruct", dtype="float32"), rank=8, alpha=16)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ids = torch.randint(0, model.config.vocab_size, (2, 64), generator=torch.Generator().manual_seed(0))
    model.train()
    loss = model(ids, labels=ids).loss
    loss.backward()
    grads = all(p.grad is not None for p in lora_parameters(model))
    # VmHWM: this process image's peak RSS (ru_maxrss would carry over the parent's across exec)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024
    print(json.dumps(dict(total=total, trainable=trainable, loss=loss.item(), grads=grads, peak=peak)))
    """
)


@pytest.mark.slow
def test_lora_refuses_a_model_that_keeps_gguf_blocks(bundled_gguf):
    with pytest.raises(ConfigError, match='dtype="float32"'):
        apply_lora(GPT4LMHeadModel.from_pretrained(bundled_gguf))


@pytest.mark.slow
@pytest.mark.bundled  # loaded in a fresh interpreter, out of the fixtures' sight
def test_lora_on_the_bundled_135m_model_is_small_and_fits():
    # A fresh interpreter, so the peak RSS is this workload's alone.
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT], capture_output=True, text=True, timeout=300, check=True
    )
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert 130e6 < stats["total"] < 140e6
    assert stats["trainable"] / stats["total"] < 0.02  # ~2.0M adapters at rank 8 on all linears
    assert stats["trainable"] == 30 * 8 * ((576 + 960) + (576 + 576) + (576 + 3072) + (1536 + 576))
    assert stats["grads"] and 0 < stats["loss"] < 20
    assert stats["peak"] < 4 * 2**30, f"peak RSS {stats['peak'] / 2**30:.2f} GiB"
