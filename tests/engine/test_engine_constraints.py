"""Constrained requests in the Engine: a per-row grammar mask in a mixed batch, fast-forward of forced
tokens (fed to the cache in one forward), and how constrained requests finish."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import torch

from gptkit import GPT4Config, GPT4LMHeadModel, GPT4Tokenizer
from gptkit.engine import Engine, SamplingParams
from gptkit.registry import DEFAULT_MODEL

SCHEMA = {
    "type": "object",
    "properties": {
        "animal": {"enum": ["cat", "dog", "horse"]},
        "legs": {"type": "integer", "minimum": 0, "maximum": 8},
        "names": {"type": "array", "items": {"type": "string", "maxLength": 6}, "minItems": 1, "maxItems": 2},
    },
    "required": ["animal", "legs", "names"],
    "additionalProperties": False,
}
REGEX = r"[a-z]{1,8}@[a-z]{1,8}\.(com|org)"


@pytest.fixture(scope="module")
def smol_tokenizer(bundled_gguf):
    return GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def smol_tiny(smol_tokenizer):
    """A random one-layer model over the bundled SmolLM2 vocabulary."""
    torch.manual_seed(1)
    config = GPT4Config(vocab_size=len(smol_tokenizer), n_layer=1, n_head=2, n_embd=32, context_length=256,
                        eos_token_id=smol_tokenizer.eos_token_id)  # fmt: skip
    return GPT4LMHeadModel(config).eval()


def prompts(tokenizer):
    return [
        tokenizer.encode(t) for t in ("The first prompt", "Another one here", "Third", "And a fourth one")
    ]


def greedy(**options):
    return SamplingParams(temperature=0, **options)


def test_mixed_batch_masks_only_the_constrained_rows(smol_tiny, smol_tokenizer):
    ids = prompts(smol_tokenizer)
    params = [greedy(max_tokens=12), greedy(max_tokens=60, json_schema=SCHEMA), greedy(max_tokens=12),
              greedy(max_tokens=30, regex=REGEX)]  # fmt: skip
    together = Engine(smol_tiny, smol_tokenizer, max_batch_size=4).generate(ids, params)
    alone = Engine(smol_tiny, smol_tokenizer, max_batch_size=1)
    for i in (0, 2):  # free rows: exactly what they give alone
        assert together[i].token_ids == alone.generate([ids[i]], params[i])[0].token_ids
    jsonschema.validate(json.loads(together[1].text), SCHEMA)
    assert re.fullmatch(REGEX, together[3].text)
    assert [c.finish_reason for c in together] == ["length", "stop", "length", "stop"]
    for i in (1, 3):  # constrained rows: the same tokens alone
        assert together[i].token_ids == alone.generate([ids[i]], params[i])[0].token_ids


def count_forwards(model, monkeypatch) -> list[int]:
    calls = [0]
    original = model.cached_inputs

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "cached_inputs", counted)
    return calls


def test_fast_forward_skips_forward_passes_with_the_same_tokens(smol_tiny, smol_tokenizer, monkeypatch):
    engine = Engine(smol_tiny, smol_tokenizer, max_batch_size=2)
    ids = prompts(smol_tokenizer)[:1]
    calls = count_forwards(smol_tiny, monkeypatch)
    slow = engine.generate(ids, greedy(max_tokens=60, json_schema=SCHEMA, fast_forward=False))[0]
    slow_calls, calls[0] = calls[0], 0
    fast = engine.generate(ids, greedy(max_tokens=60, json_schema=SCHEMA))[0]
    assert fast.token_ids == slow.token_ids
    assert fast.text == slow.text and fast.finish_reason == slow.finish_reason == "stop"
    assert slow_calls == len(slow.token_ids)  # prefill + one forward per token but the last
    assert calls[0] < slow_calls - 5  # the forced tokens ('{"animal": "', ...) cost no forward each
    # beside a free row in the same batch: the free row still matches running alone
    both = engine.generate(
        prompts(smol_tokenizer)[:2], [greedy(max_tokens=60, json_schema=SCHEMA), greedy(max_tokens=20)]
    )
    assert both[0].token_ids == fast.token_ids
    assert (
        both[1].token_ids
        == Engine(smol_tiny, smol_tokenizer, 1)
        .generate(prompts(smol_tokenizer)[1:2], greedy(max_tokens=20))[0]
        .token_ids
    )


def test_unsatisfiable_within_max_tokens_ends_with_length(smol_tiny, smol_tokenizer):
    engine = Engine(smol_tiny, smol_tokenizer, max_batch_size=2)
    done = engine.generate(prompts(smol_tokenizer)[:1], greedy(max_tokens=4, regex="(ab ){30}"))[0]
    assert done.finish_reason == "length"
    assert done.completion_tokens == 4 and not re.fullmatch("(ab ){30}", done.text)
    assert ("ab " * 30).startswith(done.text)


def test_stream_and_logprobs_of_constrained_requests(smol_tiny, smol_tokenizer):
    engine = Engine(smol_tiny, smol_tokenizer, max_batch_size=2)
    ids = prompts(smol_tokenizer)[2]
    text = "".join(engine.stream(ids, greedy(max_tokens=60, json_schema=SCHEMA)))
    jsonschema.validate(json.loads(text), SCHEMA)
    scored = engine.generate([ids], greedy(max_tokens=60, json_schema=SCHEMA, logprobs=2))[0]
    assert scored.text == text  # logprobs turn fast-forward off: every token gets its logprob
    assert len(scored.logprobs) == len(scored.token_ids)
    assert all(entry.logprob <= 0 for entry in scored.logprobs)
