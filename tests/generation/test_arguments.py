"""Invalid generation arguments fail before any model call, with an error naming the parameter."""

from __future__ import annotations

import math

import pytest
import torch

from gptkit.errors import ContextLengthError, GenerationError
from gptkit.generation import GenerationConfig, generate

PROMPT = torch.tensor([[5, 17, 42, 8]])


@pytest.mark.parametrize(
    "options, name",
    [
        (dict(temperature=-0.5), "temperature"),
        (dict(temperature=math.nan), "temperature"),
        (dict(temperature="hot"), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_p=math.nan), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(num_beams=0), "num_beams"),
        (dict(num_return_sequences=0), "num_return_sequences"),
        (dict(num_return_sequences=3, num_beams=2), "num_return_sequences"),
        (dict(num_return_sequences=2), "num_return_sequences"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=True), "max_new_tokens"),
        (dict(max_length=4), "max_length"),
        (dict(max_length=2), "max_length"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(repetition_penalty=math.nan), "repetition_penalty"),
        (dict(length_penalty=math.inf), "length_penalty"),
        (dict(early_stopping="sometimes"), "early_stopping"),
        (dict(eos_token_id=-3), "eos_token_id"),
        (dict(stop_strings=[""]), "stop_strings"),
        (dict(stop_strings="###"), "tokenizer"),
        (dict(do_sample="yes"), "do_sample"),
        (dict(not_an_option=1), "not_an_option"),
    ],
)
def test_bad_arguments_raise_generation_error_naming_them(llama_pair, options, name):
    _, model = llama_pair
    with pytest.raises(GenerationError, match=name):
        generate(model, PROMPT, **options)


@pytest.mark.parametrize(
    "options, name",
    [
        (dict(temperature=-0.5), "temperature"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=2.5), "top_k"),
        (dict(min_p=2.0), "min_p"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(min_new_tokens=-1), "min_new_tokens"),
        (dict(eos_token_id=-3), "eos_token_id"),
        (dict(stop_strings=[""]), "stop_strings"),
        (dict(do_sample="yes"), "do_sample"),
        (dict(early_stopping="sometimes"), "early_stopping"),
        (dict(num_return_sequences=2), "num_return_sequences"),
    ],
)
def test_config_errors_carry_the_option_as_param(options, name):
    with pytest.raises(GenerationError) as raised:
        GenerationConfig(**options)
    assert raised.value.param == name
    assert str(raised.value).startswith(name)


def test_prompt_over_the_context_raises_context_length_error(llama_pair):
    _, model = llama_pair
    context = model.config.context_length
    with pytest.raises(ContextLengthError, match=f"{context + 1}.*{context}"):
        generate(model, torch.zeros(1, context + 1, dtype=torch.long))
    with pytest.raises(ContextLengthError, match=f"{PROMPT.shape[1]}.*{context}"):
        generate(model, PROMPT, max_new_tokens=context)
    with pytest.raises(ContextLengthError, match="max_length"):
        generate(model, PROMPT, max_length=context + 1)


def test_default_length_is_capped_by_the_context(llama_pair):
    _, model = llama_pair
    context = model.config.context_length
    assert generate(model, PROMPT).shape[1] == PROMPT.shape[1] + 20
    assert generate(model, torch.zeros(1, context - 3, dtype=torch.long)).shape[1] == context


def test_bad_inputs(llama_pair):
    _, model = llama_pair
    with pytest.raises(GenerationError, match="input_ids"):
        generate(model, torch.tensor([[5, 1000]]))
    with pytest.raises(GenerationError, match="input_ids"):
        generate(model, torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(GenerationError, match="attention_mask"):
        generate(model, PROMPT, torch.ones(1, 3))


def test_config_object_and_overrides(llama_pair):
    _, model = llama_pair
    config = GenerationConfig(max_new_tokens=3)
    assert generate(model, PROMPT, generation_config=config).shape[1] == 7
    assert generate(model, PROMPT, generation_config=config, max_new_tokens=5).shape[1] == 9
    with pytest.raises(GenerationError, match="top_p"):
        config.replace(top_p=2.0)
