"""Every family runs in the Engine (batched = alone), behind the server, and after int8/int4 quantization."""

from __future__ import annotations

import copy

import pytest
import torch
from family_models import FAMILIES, greedy_ours, save_hf, tiny_hf

from gptkit import GPT4LMHeadModel, GPT4Tokenizer
from gptkit.engine import Engine, SamplingParams
from gptkit.model.moe import MoEMLP
from gptkit.quant import quantize_model

PROMPTS = ["hello world, the", "stop word ends héllo wörld 🙂 naïve"]


@pytest.fixture(scope="module")
def tokenizer(byte_tokenizer, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok")
    byte_tokenizer.save(str(directory / "tokenizer.json"))
    return GPT4Tokenizer.from_pretrained(directory)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_model(request, tokenizer, tmp_path_factory):
    hf = tiny_hf(request.param, vocab_size=len(tokenizer), max_position_embeddings=64)
    model = GPT4LMHeadModel.from_pretrained(
        save_hf(hf, tmp_path_factory.mktemp(request.param)), dtype="float32"
    )
    return request.param, model


def test_engine_batches_every_family(family_model, tokenizer, single_thread):
    family, model = family_model
    engine = Engine(model, tokenizer, max_batch_size=2, max_seq_len=48)
    completions = engine.generate(PROMPTS, SamplingParams(max_tokens=8, temperature=0))
    for prompt, completion in zip(PROMPTS, completions, strict=True):
        ids = torch.tensor([tokenizer.encode(prompt)])
        assert completion.token_ids == greedy_ours(model, ids, 8), family


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_quantized_family_stays_close(family_model, scheme, single_thread):
    family, model = family_model
    quantized = quantize_model(copy.deepcopy(model), scheme)
    ids = torch.randint(0, 200, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = model(ids).logits, quantized(ids).logits
    relative = ((actual - expected).norm() / expected.norm()).item()
    assert relative < (0.05 if scheme == "int8" else 0.5), (family, relative)  # random wide weights
    for module in quantized.modules():  # experts and routers stay in floating point
        if isinstance(module, MoEMLP):
            assert module.gate_up_exps.weight.dtype == torch.float32


def test_server_completion_for_every_family(family_model, tokenizer):
    from fastapi.testclient import TestClient

    from gptkit.serve import create_app

    family, model = family_model
    app = create_app(model, tokenizer, model_name=family, max_batch_size=2, max_seq_len=48)
    with TestClient(app) as client:
        response = client.post("/v1/completions", json={"model": family, "prompt": PROMPTS[0], "max_tokens": 5,
                                                        "temperature": 0})  # fmt: skip
    assert response.status_code == 200, response.text
    expected = greedy_ours(model, torch.tensor([tokenizer.encode(PROMPTS[0])]), 5)
    assert response.json()["choices"][0]["text"] == tokenizer.decode(expected)
