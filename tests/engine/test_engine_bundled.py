"""The engine on the bundled SmolLM2: three concurrent greedy requests equal model.generate's."""

from __future__ import annotations

import pytest
import torch

from gptkit import GPT4LMHeadModel, GPT4Tokenizer
from gptkit.engine import Engine, SamplingParams


@pytest.mark.slow
def test_three_concurrent_greedy_requests_equal_generate():
    tokenizer = GPT4Tokenizer.from_pretrained("smollm2-135m-instruct")
    model = GPT4LMHeadModel.from_pretrained("smollm2-135m-instruct").eval()
    prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
    engine = Engine(model, tokenizer, max_batch_size=4, max_seq_len=128)
    completions = engine.generate(prompts, SamplingParams(max_tokens=16, temperature=0))
    for prompt, completion in zip(prompts, completions, strict=True):
        ids = tokenizer.encode(prompt)
        expected = model.generate(torch.tensor([ids]), max_new_tokens=16)[0, len(ids) :].tolist()
        assert completion.token_ids == expected
        assert completion.text == tokenizer.decode(
            expected[:-1]
            if completion.finish_reason == "stop" and expected[-1] in model.config.eos_token_ids
            else expected
        )
