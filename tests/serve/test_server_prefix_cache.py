"""The server's prefix cache: exact usage.prompt_tokens_details.cached_tokens, /metrics, --prefix-cache-mb."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from gptkit.cli import main
from gptkit.engine.prefix_cache import BLOCK_SIZE
from gptkit.errors import ConfigError
from gptkit.serve import create_app

pytestmark = pytest.mark.slow


def unique_prompt(seed: int, length: int = 40) -> list[int]:
    """Token ids no other test sends (so nothing of it is cached before this test)."""
    rng = random.Random(f"prefix-cache-{seed}")
    return [rng.randrange(1000, 40000) for _ in range(length)]


def complete(client, server, prompt, **options):
    return client.completions.create(
        model=server.model_name,
        prompt=prompt,
        max_tokens=options.pop("max_tokens", 3),
        temperature=0,
        **options,
    )


def test_cached_tokens_are_reported_exactly(openai_client, bundled_server, reference_engine):
    prompt = unique_prompt(1)  # 40 tokens: blocks 1-2 are reusable, the last token is always prefilled
    first = complete(openai_client, bundled_server, prompt)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    again = complete(openai_client, bundled_server, prompt)
    assert again.usage.prompt_tokens_details.cached_tokens == 32
    assert again.usage.prompt_tokens == 40
    longer = prompt + [5000] * 20  # the first request kept 40 + 2 tokens: blocks 1-2 only
    assert complete(openai_client, bundled_server, longer).usage.prompt_tokens_details.cached_tokens == 32
    expected = reference_engine.generate([prompt], [_greedy(3)])[0]  # no prefix cache there
    assert [again.choices[0].text, first.choices[0].text] == [expected.text] * 2


def test_n_choices_report_what_every_choice_reused(openai_client, bundled_server):
    prompt = unique_prompt(2)
    fresh = complete(openai_client, bundled_server, prompt, n=3)  # choice 0 prefills, 1 and 2 reuse it
    assert fresh.usage.prompt_tokens_details.cached_tokens == 0
    repeated = complete(openai_client, bundled_server, prompt, n=2)
    assert repeated.usage.prompt_tokens_details.cached_tokens == 32
    texts = {c.text for c in [*fresh.choices, *repeated.choices]}
    assert len(texts) == 1  # greedy: every choice the same


def test_streamed_usage_and_chat_report_cached_tokens(openai_client, bundled_server):
    prompt = unique_prompt(3, length=50)
    complete(openai_client, bundled_server, prompt)
    chunks = list(complete(openai_client, bundled_server, prompt, stream=True, stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 48
    messages = [{"role": "user", "content": "Tell me about the " + "very " * 40 + "big sea."}]
    for expected_min in (0, BLOCK_SIZE):
        reply = openai_client.chat.completions.create(
            model=bundled_server.model_name, messages=messages, max_tokens=2, temperature=0
        )
        cached = reply.usage.prompt_tokens_details.cached_tokens
        assert cached >= expected_min and cached % BLOCK_SIZE == 0 and cached < reply.usage.prompt_tokens
    assert cached == (reply.usage.prompt_tokens - 1) // BLOCK_SIZE * BLOCK_SIZE  # the second: all it can


def test_metrics_count_the_prefix_cache(openai_client, bundled_server, metric):
    url = bundled_server.url
    names = ("lookups_total", "hits_total", "prompt_tokens_total", "cached_tokens_total")
    before = {name: metric(url, f"gptkit_prefix_cache_{name}") for name in names}
    prompt = unique_prompt(4)
    complete(openai_client, bundled_server, prompt)
    complete(openai_client, bundled_server, prompt)
    after = {name: metric(url, f"gptkit_prefix_cache_{name}") for name in names}
    deltas = {name: after[name] - before[name] for name in names}
    assert deltas == {
        "lookups_total": 2,
        "hits_total": 1,
        "prompt_tokens_total": 80,
        "cached_tokens_total": 32,
    }
    memory = metric(url, "gptkit_prefix_cache_memory_bytes")
    assert 0 < memory <= metric(url, "gptkit_prefix_cache_capacity_bytes") <= 512 * 2**20
    rate = metric(url, "gptkit_prefix_cache_hit_rate")
    assert rate == pytest.approx(after["cached_tokens_total"] / after["prompt_tokens_total"])


def test_prefix_cache_off_and_a_budget_below_one_block(tiny_chat_model, chat_tokenizer):
    state = create_app(tiny_chat_model, chat_tokenizer, model_name="tiny", prefix_cache_mb=0).state.gptkit
    assert state.driver.engine.prefix_cache is None
    assert b"gptkit_prefix_cache" not in state.metrics.exposition()
    on = create_app(tiny_chat_model, chat_tokenizer, model_name="tiny").state.gptkit
    assert b"gptkit_prefix_cache_capacity_bytes" in on.metrics.exposition()
    with pytest.raises(ConfigError, match="smaller than one cache block"):
        create_app(tiny_chat_model, chat_tokenizer, model_name="tiny", prefix_cache_mb=1e-6)


def test_the_cli_refuses_a_budget_below_one_block_in_one_line(capsys):
    assert main(["serve", "--port", "0", "--prefix-cache-mb", "0.01"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("gptkit serve: error: prefix_cache_mb=0.01 MiB is smaller than one cache block")
    assert main(["serve", "--prefix-cache-mb", "-1"]) == 2


def test_usage_without_the_openai_client(bundled_server):
    body = {"model": bundled_server.model_name, "prompt": unique_prompt(5), "max_tokens": 1}
    headers = {"Authorization": f"Bearer {bundled_server.api_key}"}
    for _ in range(2):
        response = httpx.post(
            bundled_server.base_url + "/completions", json=body, headers=headers, timeout=60
        )
    usage = json.loads(response.text)["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 32}
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def _greedy(n: int):
    from gptkit.engine import SamplingParams

    return SamplingParams(max_tokens=n, temperature=0)
