"""Quality guard on the bundled SmolLM2-135M: int8 keeps greedy tokens and perplexity of the fp32 model."""

from __future__ import annotations

import math

import pytest
import torch

from gptkit import GPT4LMHeadModel, GPT4Tokenizer
from gptkit.quant import quantize_model

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "Photosynthesis is the process by which",
]
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def models(bundled_gguf):
    """(fp32 model, int8 model with fp32 activations, int8 model with bf16 activations)."""
    fp32 = GPT4LMHeadModel.from_pretrained(str(bundled_gguf))
    int8 = GPT4LMHeadModel.from_pretrained(str(bundled_gguf), quantize="int8")
    int8_bf16 = quantize_model(GPT4LMHeadModel.from_pretrained(str(bundled_gguf)), "int8", torch.bfloat16)
    return fp32, int8, int8_bf16


@pytest.fixture(scope="module")
def tokenizer():
    return GPT4Tokenizer.from_pretrained("smollm2-135m-instruct")


@torch.inference_mode()
def teacher_forced_agreement(reference, candidate, tokenizer) -> float:
    """Share of positions where candidate's argmax equals reference's greedy token (reference's continuation)."""
    agree = total = 0
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt, return_tensors="pt")
        # min_new_tokens suppresses EOS, so seq is reference's greedy path with EOS masked out
        seq = reference.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
        start = ids.shape[1] - 1  # logits at positions start.. predict the generated tokens
        ref = reference(seq).logits[0, start:-1].argmax(-1)  # (NEW_TOKENS,)
        got = candidate(seq).logits[0, start:-1].argmax(-1)
        agree += int((ref == got).sum())
        total += ref.numel()
    return agree / total


@torch.inference_mode()
def perplexity(model, ids: torch.Tensor) -> float:
    return math.exp(float(model(ids, labels=ids).loss))


@pytest.mark.slow
@pytest.mark.parametrize("which", [1, 2], ids=["int8-fp32", "int8-bf16"])
def test_int8_greedy_tokens_agree_with_fp32_on_95_percent_of_positions(models, tokenizer, which):
    assert teacher_forced_agreement(models[0], models[which], tokenizer) >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("which", [1, 2], ids=["int8-fp32", "int8-bf16"])
def test_int8_shakespeare_perplexity_within_one_percent_of_fp32(models, tokenizer, shakespeare, which):
    ids = tokenizer.encode(shakespeare[:2000], return_tensors="pt")
    reference, quantized = perplexity(models[0], ids), perplexity(models[which], ids)
    assert abs(quantized / reference - 1) < 0.01, (reference, quantized)
