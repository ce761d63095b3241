"""The engine's prefix cache: identical outputs with it on and off, exact cached_tokens, LRU eviction under the
budget, no reuse across models, and a bad budget refused."""

from __future__ import annotations

import random

import pytest
import torch

from gptkit import GPT4LMHeadModel
from gptkit.engine import Engine, SamplingParams
from gptkit.engine.prefix_cache import BLOCK_SIZE, DEFAULT_PREFIX_CACHE_MB, MIB, PrefixCache, model_namespace
from gptkit.errors import ConfigError
from gptkit.options import PREFIX_CACHE_HELP

SEQ = 128  # the tiny model's whole context


def block_mib(engine: Engine) -> float:
    """One cache block of ``engine``'s layout, in MiB."""
    return engine.prefix_cache.block_bytes / MIB


def greedy(n: int) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)


def mixed_workload(vocab: int, seed: int = 0) -> list[tuple[int, list[int], int]]:
    """(step to join at, prompt, max_tokens): prompts that share long stems, extend earlier ones, or not."""
    rng = random.Random(seed)
    draw = lambda n: [rng.randrange(1, vocab) for _ in range(n)]  # noqa: E731
    stems = [draw(40), draw(23), draw(70)]
    requests = []
    for i in range(24):
        kind = i % 4
        if kind == 3:
            prompt = draw(rng.randrange(3, 50))  # unshared
        else:
            stem = stems[kind]
            prompt = stem[: rng.randrange(len(stem) // 2, len(stem) + 1)] + draw(rng.randrange(0, 20))
        requests.append((rng.randrange(0, 30), prompt, rng.randrange(1, 12)))
    return requests


def run_workload(engine: Engine, workload) -> list:
    """Add each request at its step (joining a running batch); completions in workload order."""
    ids, done, step = {}, {}, 0
    while len(done) < len(workload):
        for index, (join, prompt, n) in enumerate(workload):
            if join == step:
                ids[engine.add_request(prompt, greedy(n))] = index
        done.update({ids[e.request_id]: e.completion for e in engine.step() if e.finished})
        step += 1
    return [done[i] for i in range(len(workload))]


@pytest.fixture(scope="module")
def reference(model, tokenizer):
    """The mixed workload's completions with the prefix cache off."""
    workload = mixed_workload(model.config.vocab_size)
    off = Engine(model, tokenizer, max_batch_size=3, max_seq_len=SEQ, prefix_cache_mb=0)
    assert off.prefix_cache is None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the single_thread one
    try:
        return workload, run_workload(off, workload)
    finally:
        torch.set_num_threads(threads)


def test_mixed_requests_equal_cache_off(model, tokenizer, reference):
    workload, expected = reference
    engine = Engine(model, tokenizer, max_batch_size=3, max_seq_len=SEQ)
    completions = run_workload(engine, workload)
    assert [c.token_ids for c in completions] == [c.token_ids for c in expected]
    stats = engine.prefix_cache.stats()
    assert stats.cached_tokens == sum(c.cached_tokens for c in completions) > 200
    assert stats.hits > 10 and stats.evicted_tokens == 0
    assert all(c.cached_tokens % BLOCK_SIZE == 0 and c.cached_tokens < c.prompt_tokens for c in completions)


def test_eviction_under_a_tiny_budget_keeps_outputs_and_memory_bounded(model, tokenizer, reference):
    workload, expected = reference
    engine = Engine(model, tokenizer, max_batch_size=3, max_seq_len=SEQ, prefix_cache_mb=1)
    budget_mb = 5 * block_mib(engine)  # five blocks: far less than the workload's prefixes
    engine = Engine(model, tokenizer, max_batch_size=3, max_seq_len=SEQ, prefix_cache_mb=budget_mb)
    completions = run_workload(engine, workload)
    assert [c.token_ids for c in completions] == [c.token_ids for c in expected]
    stats = engine.prefix_cache.stats()
    assert stats.evicted_tokens > 0 and stats.cached_tokens > 0
    pool_bytes = sum(t.nbytes for t in (*engine.prefix_cache.k, *engine.prefix_cache.v))
    assert stats.memory_bytes <= stats.capacity_bytes == pool_bytes <= budget_mb * MIB


def test_cached_tokens_are_exact(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=2, max_seq_len=SEQ)
    prompt = list(range(1, 49))  # 48 tokens: three full blocks
    first = engine.generate([prompt], greedy(4))[0]  # stores its prompt + 3 answer tokens: 51 -> 3 blocks
    assert first.cached_tokens == 0
    again = engine.generate([prompt], greedy(4))[0]
    assert again.cached_tokens == 32  # the last prompt token is always prefilled: block 3 is not usable
    assert again.token_ids == first.token_ids
    longer = engine.generate([prompt + first.token_ids[:2] + [7, 7]], greedy(4))[0]
    assert longer.cached_tokens == 48
    forked = engine.generate([prompt[:20] + [9] * 30], greedy(4))[0]
    assert forked.cached_tokens == 16  # diverges inside block 2
    scored = engine.generate([prompt], SamplingParams(max_tokens=1, prompt_logprobs=2))[0]
    assert scored.cached_tokens == 0  # prompt logprobs need every position: no reuse
    assert engine.prefix_cache.stats().cached_tokens == 32 + 48 + 16


def test_concurrent_requests_share_a_prompt_prefilled_in_the_same_step(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=4, max_seq_len=SEQ)
    prompt = list(range(5, 45))  # 40 tokens
    completions = engine.generate([prompt] * 3, greedy(6))
    assert [c.cached_tokens for c in completions] == [0, 32, 32]
    assert len({tuple(c.token_ids) for c in completions}) == 1


def test_no_reuse_across_models_even_with_a_shared_pool(model, tokenizer):
    other = GPT4LMHeadModel(model.config).eval()  # same shapes, other weights
    first = Engine(model, tokenizer, max_batch_size=1, max_seq_len=SEQ)
    second = Engine(other, tokenizer, max_batch_size=1, max_seq_len=SEQ)
    second.prefix_cache = first.prefix_cache  # one pool for both: only the keys keep them apart
    prompt = list(range(3, 60))
    first.generate([prompt], greedy(3))
    theirs = second.generate([prompt], greedy(3))[0]
    alone = Engine(other, tokenizer, max_batch_size=1, max_seq_len=SEQ, prefix_cache_mb=0)
    assert theirs.cached_tokens == 0
    assert theirs.token_ids == alone.generate([prompt], greedy(3))[0].token_ids
    assert second.generate([prompt], greedy(3))[0].cached_tokens == 48  # its own entries are reused


def test_namespace_separates_dtype_quantization_and_adapter(model):
    base = model_namespace(model)
    assert base == model_namespace(model)
    assert base != model_namespace(model, adapter="sql")
    doubled = GPT4LMHeadModel(model.config).eval().to(torch.float64)
    assert model_namespace(doubled)[1:3] == ("torch.float64", None)
    assert model_namespace(doubled) != base


def test_lru_evicts_the_least_recently_used_leaf(model):
    cache = model.new_cache(1, 64)
    model(torch.arange(1, 65)[None], cache=cache)  # any keys and values, columns 0..63
    size = BLOCK_SIZE
    pool = PrefixCache(cache, 3 * size * _bytes_per_token(cache) / MIB)
    assert pool.capacity == 3
    space = model_namespace(model)
    a, b, c = [list(range(s, s + 2 * size)) for s in (100, 200, 300)]
    pool.store(space, a, cache, 0)  # two blocks
    pool.store(space, b[:size], cache, 0)  # one: full
    pool.lookup(space, a, limit=len(a) + 1)  # a is now more recent than b
    pool.store(space, c[:size], cache, 0)  # evicts b, the least recently used leaf
    assert len(pool.lookup(space, b, 99)) == 0 and len(pool.lookup(space, a, 99)) == 2
    pool.store(space, c, cache, 0)  # c's second block: evicts a's leaf (a's root block is a parent)
    assert len(pool.lookup(space, a, 99)) == 1 and len(pool.lookup(space, c, 99)) == 2
    assert pool.stats().evicted_tokens == 2 * size and pool.stats().memory_bytes == 3 * pool.block_bytes


@pytest.mark.parametrize("free", [None, [5, 9, 2]], ids=["consecutive", "scattered"])
def test_loaded_blocks_equal_the_stored_keys_and_values(model, free):
    cache = model.new_cache(2, 64)
    tokens = list(range(1, 57))
    model(torch.tensor([tokens]), cache=cache.row_range(0, 1))
    pool = PrefixCache(cache, 1)
    if free is not None:
        pool.free = free  # pool places 2, 9, 5: not a range
    space = model_namespace(model)
    pool.store(space, tokens, cache, 0)
    loaded = pool.load(pool.lookup(space, tokens, limit=56), cache, 1)
    assert loaded == 48 and cache.next_column.tolist() == [56, 48]
    for layer in (*cache.k, *cache.v):
        assert torch.equal(layer[1, :, :48], layer[0, :, :48])
    assert cache.positions[1, :48].tolist() == list(range(48)) and bool(cache.valid[1, :48].all())


def test_a_budget_below_one_block_or_not_a_number_is_refused(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=1, max_seq_len=SEQ, prefix_cache_mb=1)
    for bad in (block_mib(engine) * 0.99, -1, "64", True, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="prefix_cache_mb") as error:
            Engine(model, tokenizer, max_batch_size=1, max_seq_len=SEQ, prefix_cache_mb=bad)
        assert error.value.param == "prefix_cache_mb"
    assert (
        Engine(model, tokenizer, max_seq_len=SEQ, prefix_cache_mb=block_mib(engine)).prefix_cache.capacity
        == 1
    )
    default = Engine(model, tokenizer, max_seq_len=SEQ).prefix_cache  # on by default
    assert default.capacity * default.block_bytes == DEFAULT_PREFIX_CACHE_MB * MIB
    assert f"default {DEFAULT_PREFIX_CACHE_MB:g})" in PREFIX_CACHE_HELP  # the CLI's help says the same


def _bytes_per_token(cache) -> int:
    return sum(t.shape[1] * t.shape[3] * t.element_size() for t in (*cache.k, *cache.v))


def common_prefix_length(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


@pytest.mark.slow
def test_bundled_chat_turns_equal_cache_off_and_report_exact_cached_tokens(bundled_gguf):
    from gptkit import GPT4Tokenizer

    model = GPT4LMHeadModel.from_pretrained(bundled_gguf).eval()  # quantized weights, native kernels
    tokenizer = GPT4Tokenizer.from_pretrained("smollm2-135m-instruct")
    on = Engine(model, tokenizer, max_batch_size=2, max_seq_len=512)
    off = Engine(model, tokenizer, max_batch_size=2, max_seq_len=512, prefix_cache_mb=0)
    params = SamplingParams(max_tokens=12, temperature=0)
    messages, stored = [], []
    for question in ("Name three colors of the rainbow.", "Which one is warmest?", "Why?"):
        messages.append({"role": "user", "content": question})
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        with_cache, without = on.generate([ids], params)[0], off.generate([ids], params)[0]
        assert with_cache.token_ids == without.token_ids
        expected = min(common_prefix_length(stored, ids), len(ids) - 1) // BLOCK_SIZE * BLOCK_SIZE
        assert with_cache.cached_tokens == expected
        stored = ids + with_cache.token_ids[:-1]  # what the finished request left in the cache
        messages.append({"role": "assistant", "content": with_cache.text})
    assert expected > 32
