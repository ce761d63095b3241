"""LoRA adapter directories (PEFT's layout): names mapped through the key maps, checked against the model,
merged or applied; compared with transformers (and peft, where installed) on the same weights."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from gptkit import AdapterError, GPT4Config, GPT4LMHeadModel
from gptkit.model.adapters import MultiLoRALinear, use_adapters
from gptkit.train.lora import apply_lora, lora_state_dict, merge_lora
from gptkit.weights.adapters import load_adapter, read_adapter, save_adapter

TARGETS = ("self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def llama():
    """A tiny float32 GQA Llama with random weights."""
    torch.manual_seed(0)
    config = GPT4Config(
        vocab_size=120, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, positions="rope", norm="rmsnorm",
        mlp="swiglu", bias=False, context_length=64,
    )  # fmt: skip
    return GPT4LMHeadModel(config).eval()


IDS = torch.tensor([[3, 14, 15, 92, 65, 35, 89, 79]])


@pytest.mark.slow  # imports transformers
def test_a_hand_written_peft_directory_equals_transformers_with_the_deltas_merged(
    llama, peft_adapter_writer, tmp_path
):
    transformers = pytest.importorskip("transformers")
    llama.save_pretrained(tmp_path / "base")
    pairs = peft_adapter_writer(llama.config, tmp_path / "lora", TARGETS, rank=4, alpha=8)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base", dtype=torch.float32)
    with torch.no_grad():
        for module, (A, B) in pairs.items():
            reference.get_submodule(module).weight += (8 / 4) * B @ A  # PEFT's merge: W + alpha/r B A
        expected = reference(IDS).logits
    merged = GPT4LMHeadModel.from_pretrained(tmp_path / "base", dtype="float32", lora=tmp_path / "lora")
    assert not any(isinstance(m, MultiLoRALinear) for m in merged.modules())  # float weights: merged
    applied = copy.deepcopy(llama)
    load_adapter(applied, tmp_path / "lora", name="tuned")
    with torch.no_grad(), use_adapters(applied, [0]):
        served = applied(IDS).logits
    torch.testing.assert_close(merged(IDS).logits.detach(), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(served, expected, atol=1e-4, rtol=1e-4)
    assert (expected - llama(IDS).logits).abs().max() > 0.05  # the adapter changes the outputs


@pytest.mark.slow  # imports transformers and peft
def test_peft_itself_saves_adapters_that_load_to_its_outputs(llama, tmp_path):
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    llama.save_pretrained(tmp_path / "base")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base", dtype=torch.float32)
    lora_config = peft.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "k_proj", "gate_proj"])
    tuned = peft.get_peft_model(hf, lora_config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)  # PEFT starts B at zero: make the adapter do something
    tuned.save_pretrained(tmp_path / "lora")
    with torch.no_grad():
        expected = tuned(IDS).logits
    ours = GPT4LMHeadModel.from_pretrained(tmp_path / "base", dtype="float32", lora=tmp_path / "lora")
    torch.testing.assert_close(ours(IDS).logits.detach(), expected, atol=1e-4, rtol=1e-4)


def test_our_export_is_peft_layout_and_equals_merge_lora(llama, tmp_path):
    trained = apply_lora(copy.deepcopy(llama), rank=4, alpha=8)
    with torch.no_grad():
        for p in (p for n, p in trained.named_parameters() if n.endswith("lora_B")):
            p.normal_(0, 0.05)
    save_adapter(tmp_path, llama.config, lora_state_dict(trained), rank=4, alpha=8, base_model="tiny")
    settings = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (
        settings["peft_type"] == "LORA"
        and settings["r"] == 4
        and "self_attn.q_proj" in settings["target_modules"]
    )
    weights = read_adapter(tmp_path, llama.config)
    assert weights.modules["blocks.0.attn.qkv"][0].shape == (4, 32)  # the shared A is found again: rank 4
    served = copy.deepcopy(llama)
    load_adapter(served, tmp_path, name="a")
    expected = merge_lora(trained).eval()(IDS).logits
    with torch.no_grad(), use_adapters(served, [0]):
        torch.testing.assert_close(served(IDS).logits, expected.detach(), atol=1e-5, rtol=1e-5)


def test_parts_with_different_ranks_fuse_block_diagonally(llama, peft_adapter_writer, tmp_path):
    peft_adapter_writer(llama.config, tmp_path / "a", ("self_attn.q_proj",), rank=2, alpha=4, seed=1)
    peft_adapter_writer(llama.config, tmp_path / "b", ("self_attn.v_proj",), rank=6, alpha=3, seed=2)
    both = tmp_path / "both"
    both.mkdir()
    from safetensors.torch import load_file, save_file

    tensors = {
        **load_file(tmp_path / "a" / "adapter_model.safetensors"),
        **load_file(tmp_path / "b" / "adapter_model.safetensors"),
    }
    save_file(tensors, both / "adapter_model.safetensors")
    (both / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 6, "lora_alpha": 6, "use_rslora": True})
    )
    A, B = read_adapter(both, llama.config).modules["blocks.0.attn.qkv"]
    assert A.shape == (8, 32) and B.shape == (64, 8)
    q_A = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    q_B = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    v_A = tensors["base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"]
    v_B = tensors["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"]
    delta = B @ A  # rows [q (32); k (16); v (16)], rsLoRA scaling alpha / sqrt(r)
    torch.testing.assert_close(delta[:32], 6 / 2**0.5 * q_B @ q_A)
    torch.testing.assert_close(delta[32:48], torch.zeros(16, 32))
    torch.testing.assert_close(delta[48:], 6 / 6**0.5 * v_B @ v_A)


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda t: t.update({k.replace("layers.1", "layers.7"): v.clone() for k, v in t.items()}),
            "not a linear layer",
        ),
        (
            lambda t: t.update({k: v[:, :3].clone() for k, v in t.items() if "lora_B" in k}),
            "this model needs",
        ),
        (
            lambda t: t.update({k: v[:, :16].clone() for k, v in t.items() if "lora_A" in k}),
            "this model needs",
        ),
        (lambda t: t.pop(next(k for k in t if "lora_B" in k)), "without its partner"),
        (
            lambda t: t.update({"base_model.model.model.embed_tokens.weight": torch.zeros(2)}),
            "not a LoRA matrix",
        ),
    ],
    ids=["layer-beyond-the-model", "rank-mismatch", "other-width", "lone-A", "full-weights"],
)
def test_an_adapter_that_does_not_fit_the_model_is_refused(
    llama, peft_adapter_writer, tmp_path, damage, message
):
    from safetensors.torch import load_file, save_file

    peft_adapter_writer(llama.config, tmp_path, TARGETS)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    damage(tensors)
    save_file(tensors, tmp_path / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match=message):
        load_adapter(copy.deepcopy(llama), tmp_path, name="x")


@pytest.mark.parametrize(
    "settings, message",
    [({"use_dora": True}, "DoRA"), ({"bias": "all"}, "bias"), ({"peft_type": "IA3"}, "IA3"),
     ({"modules_to_save": ["lm_head"]}, "modules_to_save")],
)  # fmt: skip
def test_adapter_kinds_gptkit_cannot_serve_are_refused(
    llama, peft_adapter_writer, tmp_path, settings, message
):
    peft_adapter_writer(llama.config, tmp_path, TARGETS, **settings)
    with pytest.raises(AdapterError, match=message):
        read_adapter(tmp_path, llama.config)


def test_missing_files_and_pickles_are_refused(llama, tmp_path):
    with pytest.raises(AdapterError, match="adapter_config.json is missing"):
        read_adapter(tmp_path, llama.config)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(AdapterError, match="pickle"):
        read_adapter(tmp_path, llama.config)
