"""Constrained decoding (llguidance): compiling and refusing constraints, and generate() with a grammar mask.

A random tiny model over a real vocabulary must still produce output that follows the constraint: that is
what the mask guarantees."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import torch

from gptkit import GPT4Config, GPT4LMHeadModel, GPT4Tokenizer
from gptkit.engine import SamplingParams
from gptkit.errors import GenerationError
from gptkit.generation import GenerationConfig, generate
from gptkit.generation.constraints import choice_grammar, compile_constraint
from gptkit.registry import DEFAULT_MODEL


@pytest.fixture(scope="module")
def smol_tokenizer(bundled_gguf):
    return GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)


def tiny_model(vocab_size: int, eos: int) -> GPT4LMHeadModel:
    torch.manual_seed(0)
    config = GPT4Config(
        vocab_size=vocab_size, n_layer=1, n_head=2, n_embd=32, context_length=256, eos_token_id=eos
    )
    return GPT4LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def smol_tiny(smol_tokenizer):
    """A random one-layer model over the bundled SmolLM2 vocabulary (GGUF, tokenizers backend)."""
    return tiny_model(len(smol_tokenizer), smol_tokenizer.eos_token_id)


def new_text(tokenizer, out, prompt_len):
    return tokenizer.decode(out[0, prompt_len:], skip_special_tokens=True)


@pytest.mark.parametrize(
    ("options", "param", "words"),
    [
        ({"json_schema": {"type": "array", "uniqueItems": True}}, "json_schema", "uniqueItems"),
        ({"json_schema": {"not": {"type": "string"}}}, "json_schema", '"not"'),
        ({"json_schema": {"type": "strung"}}, "json_schema", "strung"),
        ({"json_schema": {"type": "string", "format": "madeup"}}, "json_schema", "madeup"),
        ({"json_schema": "{not json"}, "json_schema", "not valid JSON"),
        ({"json_schema": [1, 2]}, "json_schema", "must be a JSON Schema object"),
        ({"regex": "(("}, "regex", "unclosed group"),
        ({"regex": "(?=a)b"}, "regex", "look-around"),
        ({"regex": ""}, "regex", "non-empty"),
        ({"grammar": "start: undefined_rule"}, "grammar", "undefined_rule"),
        ({"regex": "a", "grammar": 'start: "a"'}, "grammar", "at most one"),
        ({"regex": "a", "num_beams": 2}, "regex", "beam search"),
    ],
)
def test_bad_constraints_raise_naming_the_option(options, param, words):
    with pytest.raises(GenerationError, match=re.escape(words)) as info:
        GenerationConfig(**options)
    assert info.value.param == param
    if "num_beams" not in options:  # the engine's options are checked by the same rules
        with pytest.raises(GenerationError) as info:
            SamplingParams(**options)
        assert info.value.param == param


def test_constraint_texts_accepted():
    compile_constraint("json_schema", {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}},
                                       "$defs": {"A": {"type": "integer", "minimum": 1}}})  # fmt: skip
    compile_constraint("json_schema", '{"type": "string", "pattern": "^[a-z]+$"}')
    compile_constraint("grammar", 'root ::= "yes" | "no"')  # GBNF is converted to Lark
    assert choice_grammar(["a", 'b"c']) == 'start: "a" | "b\\"c"'


SCHEMA = {
    "type": "object",
    "properties": {
        "colour": {"enum": ["red", "green", "blue"]},
        "count": {"type": "integer", "minimum": 1, "maximum": 9},
        "tags": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2},
    },
    "required": ["colour", "count", "tags"],
    "additionalProperties": False,
}


def test_random_model_follows_a_schema_a_regex_and_a_grammar(smol_tiny, smol_tokenizer, single_thread):
    prompt = smol_tokenizer.encode("Say something:")
    for seed in range(3):
        out = generate(smol_tiny, [prompt], max_new_tokens=40, json_schema=SCHEMA, tokenizer=smol_tokenizer,
                       do_sample=True, seed=seed)  # fmt: skip
        jsonschema.validate(json.loads(new_text(smol_tokenizer, out, len(prompt))), SCHEMA)
    out = generate(smol_tiny, [prompt] * 2, max_new_tokens=20, regex=r"[A-Z][a-z]{2,5} is [0-9]{2}",
                   tokenizer=smol_tokenizer, do_sample=True, seed=3)  # fmt: skip
    for row in out:
        assert re.fullmatch(r"[A-Z][a-z]{2,5} is [0-9]{2}", new_text(smol_tokenizer, row[None], len(prompt)))
    grammar = 'start: greeting " " name\ngreeting: "hello" | "bye"\nname: /[a-z]{3}/'
    out = generate(smol_tiny, [prompt], max_new_tokens=20, grammar=grammar, tokenizer=smol_tokenizer)
    assert re.fullmatch("(hello|bye) [a-z]{3}", new_text(smol_tokenizer, out, len(prompt)))


def test_cl100k_vocabulary_and_a_padded_head(single_thread):
    """tiktoken's cl100k through llguidance's tiktoken path; the model's head wider than the tokenizer."""
    tokenizer = GPT4Tokenizer.from_pretrained("gpt-4")
    model = tiny_model(len(tokenizer) + 27, tokenizer.eos_token_id)
    prompt = tokenizer.encode("Number:")
    out = generate(model, [prompt], max_new_tokens=12, regex="-?[0-9]{1,4}\\.[0-9]", tokenizer=tokenizer,
                   do_sample=True, seed=0)  # fmt: skip
    assert re.fullmatch(r"-?[0-9]{1,4}\.[0-9]", new_text(tokenizer, out, len(prompt)))


def test_unconstrained_rows_and_generate_are_unchanged(smol_tiny, smol_tokenizer, single_thread):
    """No constraint: the same tokens as before (the mask is not applied); and a constraint needs a tokenizer."""
    prompt = smol_tokenizer.encode("Hello")
    free = generate(smol_tiny, [prompt], max_new_tokens=5)
    logits = smol_tiny(torch.tensor([prompt])).logits[0, -1]
    assert int(free[0, len(prompt)]) == int(logits.argmax())
    with pytest.raises(GenerationError, match="tokenizer") as info:
        generate(smol_tiny, [prompt], max_new_tokens=5, regex="a+")
    assert info.value.param == "regex"
