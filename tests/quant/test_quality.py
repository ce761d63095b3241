"""Quality guard on the bundled SmolLM2-135M: the default path (the file's blocks on the native kernels),
int8 and int4 keep the greedy tokens and perplexity of the float32 reference."""

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
VARIANTS = {  # id -> (scheme, activation dtype; None: fp32 through from_pretrained(quantize=...))
    "int8-fp32": ("int8", None),
    "int8-bf16": ("int8", torch.bfloat16),
    "int4-fp32": ("int4", None),
    "int4-bf16": ("int4", torch.bfloat16),
}


@pytest.fixture(scope="module")
def tokenizer():
    return GPT4Tokenizer.from_pretrained("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def reference(bundled_gguf, tokenizer, shakespeare):
    """The fp32 model's greedy paths [(sequence, first predicting position, its tokens)] and perplexity."""
    model = GPT4LMHeadModel.from_pretrained(str(bundled_gguf), dtype=torch.float32)  # the reference path
    paths = []
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = tokenizer.encode(prompt, return_tensors="pt")
            # min_new_tokens suppresses EOS, so seq is the greedy path with EOS masked out
            seq = model.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
            start = ids.shape[1] - 1  # logits at positions start.. predict the generated tokens
            paths.append((seq, start, model(seq).logits[0, start:-1].argmax(-1)))  # (NEW_TOKENS,)
    return paths, perplexity(model, shakespeare_ids(tokenizer, shakespeare))


@pytest.fixture(scope="module", params=list(VARIANTS))
def quantized(request, bundled_gguf):
    """One quantized variant at a time (module scope groups its tests, then frees it)."""
    scheme, dtype = VARIANTS[request.param]
    if dtype is None:
        return GPT4LMHeadModel.from_pretrained(str(bundled_gguf), quantize=scheme)
    return quantize_model(
        GPT4LMHeadModel.from_pretrained(str(bundled_gguf), dtype=torch.float32), scheme, dtype
    )


def shakespeare_ids(tokenizer, shakespeare: str) -> torch.Tensor:
    """The first 2000 characters of tinyshakespeare: (1, 563)."""
    return tokenizer.encode(shakespeare[:2000], return_tensors="pt")


@torch.inference_mode()
def perplexity(model, ids: torch.Tensor) -> float:
    return math.exp(float(model(ids, labels=ids).loss))


@torch.inference_mode()
def teacher_forced_agreement(paths, candidate) -> float:
    """Share of positions where candidate's argmax equals the reference's greedy token on its own path."""
    agree = total = 0
    for seq, start, want in paths:
        got = candidate(seq).logits[0, start:-1].argmax(-1)
        agree += int((want == got).sum())
        total += want.numel()
    return agree / total


@pytest.mark.slow
def test_greedy_tokens_agree_with_fp32_on_95_percent_of_positions(reference, quantized):
    assert teacher_forced_agreement(reference[0], quantized) >= 0.95


@pytest.mark.slow
def test_shakespeare_perplexity_within_one_percent_of_fp32(reference, quantized, tokenizer, shakespeare):
    want, got = reference[1], perplexity(quantized, shakespeare_ids(tokenizer, shakespeare))
    assert abs(got / want - 1) < 0.01, (want, got)


@pytest.fixture(scope="module")
def default_model(bundled_gguf):
    """What from_pretrained gives with no options: the Q4_1/Q8_0 blocks on the native kernels."""
    model = GPT4LMHeadModel.from_pretrained(str(bundled_gguf))
    assert model.quantization == "gguf"
    return model


@torch.inference_mode()
def decode_agreement(paths, candidate) -> float:
    """teacher_forced_agreement through the KV cache one token at a time (the fused decode block)."""
    agree = total = 0
    for seq, start, want in paths:
        cache = candidate.new_cache(1, seq.shape[1])
        logits = candidate(seq[:, : start + 1], cache=cache).logits[:, -1:]
        steps = [logits] + [
            candidate(seq[:, t : t + 1], cache=cache).logits for t in range(start + 1, seq.shape[1] - 1)
        ]
        got = torch.cat(steps, 1)[0].argmax(-1)
        agree += int((want == got).sum())
        total += want.numel()
    return agree / total


@pytest.mark.slow
def test_default_path_agrees_with_fp32_on_99_percent_of_positions(reference, default_model):
    assert teacher_forced_agreement(reference[0], default_model) >= 0.99  # prefill rows: packed kernel
    assert decode_agreement(reference[0], default_model) >= 0.99  # decode: one token per step


@pytest.mark.slow
def test_default_path_perplexity_within_half_a_percent_of_fp32(
    reference, default_model, tokenizer, shakespeare
):
    want, got = reference[1], perplexity(default_model, shakespeare_ids(tokenizer, shakespeare))
    assert abs(got / want - 1) < 0.005, (want, got)
