"""Speculative decoding in generate(): n-gram (prompt lookup) and draft-model drafts, checked in one forward.

Greedy output must equal plain greedy decoding token for token; sampled output must keep the target's
distribution (chi-square against the exact probabilities).
"""

from __future__ import annotations

import copy

import pytest
import torch

from gptkit import GPT4Config, GPT4LMHeadModel
from gptkit.errors import GenerationError
from gptkit.generation import GenerationConfig, build_processors, generate, stream_generate
from gptkit.generation.drafters import prompt_lookup
from gptkit.model.cache import KVCache

REPETITIVE = [5, 17, 42, 8, 9, 5, 17, 42, 8, 30, 31, 5, 17]  # n-grams that recur: the lookup finds drafts
PLAIN = [60, 3, 91, 12, 7, 33, 2]


def left_pad(prompts, pad=0):
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def perturbed(model: torch.nn.Module, scale: float, seed: int = 7) -> torch.nn.Module:
    """A copy of ``model`` with noise on its weights: a draft that agrees with it often, not always."""
    draft = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in draft.named_parameters():
            if "norm" not in name:
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return draft


@pytest.fixture(scope="module")
def target(llama_pair):
    return llama_pair[1]


@pytest.fixture(scope="module")
def near_draft(target):
    return perturbed(target, 0.02)


def speculative(model, ids, mask=None, **options):
    out = generate(model, ids, mask, return_dict_in_generate=True, **options)
    return out.sequences, out.speculation


# ---- the cache rollback ----------------------------------------------------------------------------------
def test_truncate_forgets_columns_as_if_never_written(target):
    cache = target.new_cache(2, 32)
    ids, mask = left_pad([[4, 5, 6, 7], [8, 9]])
    target(ids, attention_mask=mask, cache=cache)
    target(torch.tensor([[1, 2, 3], [4, 5, 6]]), cache=cache)  # 3 "drafts" per row
    cache.truncate([3, 1])  # row 0 rejects all three, row 1 keeps two
    assert cache.next_column.tolist() == [4, 6] and cache.next_position.tolist() == [4, 4]
    after = target(torch.tensor([[11], [12]]), cache=cache, logits_to_keep=1).logits[:, -1]
    expected_0 = target(torch.tensor([[4, 5, 6, 7, 11]])).logits[0, -1]
    expected_1 = target(torch.tensor([[8, 9, 4, 5, 12]])).logits[0, -1]
    torch.testing.assert_close(after, torch.stack([expected_0, expected_1]))
    with pytest.raises(ValueError):
        cache.truncate([7, 0])


def test_truncate_through_a_row_range_changes_only_that_row(target):
    cache = KVCache(target.config, 3, 16)
    target(torch.tensor([[1, 2, 3]] * 3), cache=cache)
    cache.row_range(1, 2).truncate([2])
    assert cache.next_column.tolist() == [3, 1, 3] and cache.valid.sum(1).tolist() == [3, 1, 3]


# ---- the n-gram lookup -----------------------------------------------------------------------------------
def test_prompt_lookup_equals_transformers_candidate_generator():
    from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        tokens = torch.randint(0, 6, (int(torch.randint(2, 40, (1,), generator=g)),), generator=g)
        num, ngram = 1 + trial % 7, 1 + trial % 3
        eos = [trial % 6] if trial % 4 == 0 else []
        theirs = PromptLookupCandidateGenerator(
            eos_token_id=torch.tensor(eos) if eos else None, num_output_tokens=num,
            max_matching_ngram_size=ngram, max_length=1000,
        )  # fmt: skip
        candidates, _ = theirs.get_candidates(tokens[None])
        assert prompt_lookup(tokens, num, ngram, eos) == candidates[0, len(tokens) :].tolist()


# ---- greedy: identical tokens ------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", [REPETITIVE, PLAIN, [1]])
def test_greedy_prompt_lookup_equals_plain_greedy(model_pair, prompt):
    _, model = model_pair
    ids = torch.tensor([prompt])
    plain = generate(model, ids, max_new_tokens=24)
    for k in (1, 3, 10):
        got, stats = speculative(model, ids, max_new_tokens=24, prompt_lookup_num_tokens=k)
        assert torch.equal(got, plain)
        assert stats.tokens == 24 - 1  # every token after the first came from a verification pass


def test_greedy_self_draft_accepts_everything(target):
    ids = torch.tensor([PLAIN])
    plain = generate(target, ids, max_new_tokens=30)
    got, stats = speculative(target, ids, max_new_tokens=30, assistant_model=target, num_assistant_tokens=4)
    assert torch.equal(got, plain)
    assert stats.acceptance_rate == 1.0 and stats.drafted > 20
    assert stats.forwards == 6  # 29 tokens after the first, 5 per pass (4 drafts + 1)


def test_greedy_near_draft_accepts_partly_and_equals_plain(target, near_draft):
    ids, mask = left_pad([PLAIN, REPETITIVE, [7, 7]])
    plain = generate(target, ids, mask, max_new_tokens=30)
    got, stats = speculative(
        target, ids, mask, max_new_tokens=30, assistant_model=near_draft, num_assistant_tokens=3
    )
    assert torch.equal(got, plain)
    assert 0.1 < stats.acceptance_rate < 1.0


def test_greedy_with_processors_equals_plain(target, near_draft):
    ids = torch.tensor([REPETITIVE])
    options = dict(
        max_new_tokens=20, repetition_penalty=1.3, no_repeat_ngram_size=3, min_new_tokens=5, eos_token_id=8
    )
    plain = generate(target, ids, **options)
    assert torch.equal(generate(target, ids, prompt_lookup_num_tokens=4, **options), plain)
    assert torch.equal(
        generate(target, ids, assistant_model=near_draft, num_assistant_tokens=3, **options), plain
    )


def test_batched_rows_accept_different_lengths(target, near_draft, monkeypatch):
    drops = []
    original = KVCache.truncate
    monkeypatch.setattr(
        KVCache, "truncate", lambda self, drop: (drops.append(list(drop)), original(self, drop))
    )
    prompts = [REPETITIVE, PLAIN, REPETITIVE[:7] + [1, 2], [3, 3, 3, 3, 3, 3]]
    ids, mask = left_pad(prompts)
    plain = generate(target, ids, mask, max_new_tokens=25)
    for options in (
        dict(prompt_lookup_num_tokens=5),
        dict(assistant_model=near_draft, num_assistant_tokens=4),
    ):
        assert torch.equal(generate(target, ids, mask, max_new_tokens=25, **options), plain)
    assert any(len(set(drop)) > 1 for drop in drops)  # rows rolled back different numbers of columns


def test_scores_and_stream_match_plain(target):
    ids = torch.tensor([REPETITIVE])
    plain = generate(target, ids, max_new_tokens=15, output_scores=True, return_dict_in_generate=True)
    spec = generate(
        target,
        ids,
        max_new_tokens=15,
        output_scores=True,
        return_dict_in_generate=True,
        prompt_lookup_num_tokens=4,
    )
    assert torch.equal(spec.sequences, plain.sequences)
    torch.testing.assert_close(torch.stack(spec.scores), torch.stack(plain.scores), rtol=1e-4, atol=1e-4)
    streamed = list(stream_generate(target, REPETITIVE, max_new_tokens=15, prompt_lookup_num_tokens=4))
    assert streamed == plain.sequences[0, len(REPETITIVE) :].tolist()


# ---- stops inside an accepted run, max_new_tokens inside a draft ----------------------------------------------
def test_eos_inside_an_accepted_run_stops_there(target):
    ids = torch.tensor([PLAIN])
    free = generate(target, ids, max_new_tokens=20)[0, len(PLAIN) :].tolist()
    eos = next(t for t in free[3:] if t not in free[:3])  # first emitted at step i >= 3
    at = free.index(eos)
    plain = generate(target, ids, max_new_tokens=20, eos_token_id=eos)
    got, stats = speculative(
        target, ids, max_new_tokens=20, eos_token_id=eos, assistant_model=target, num_assistant_tokens=8
    )
    assert torch.equal(got, plain) and got.shape[1] == len(PLAIN) + at + 1
    assert stats.forwards == 1  # the EOS came inside the first run of accepted drafts


def test_stop_string_inside_an_accepted_run(byte_model, byte_tokenizer):
    prompt = torch.tensor([[3, 50, 120, 7]])
    free = generate(byte_model, prompt, max_new_tokens=30)[0, 4:].tolist()
    stop = byte_tokenizer.decode(free[5:7])
    assert stop and stop not in byte_tokenizer.decode(free[:6])
    options = dict(max_new_tokens=30, stop_strings=stop, tokenizer=byte_tokenizer)
    plain = generate(byte_model, prompt, **options)
    got, stats = speculative(
        byte_model, prompt, assistant_model=byte_model, num_assistant_tokens=10, **options
    )
    assert torch.equal(got, plain) and got.shape[1] == 4 + 7
    assert stats.forwards == 1


@pytest.mark.parametrize("max_new_tokens", [1, 2, 5, 9])
def test_max_new_tokens_inside_a_draft(target, max_new_tokens):
    prompts = [REPETITIVE, PLAIN]
    ids, mask = left_pad(prompts)
    plain = generate(target, ids, mask, max_new_tokens=max_new_tokens)
    for options in (dict(prompt_lookup_num_tokens=6), dict(assistant_model=target, num_assistant_tokens=6)):
        got = generate(target, ids, mask, max_new_tokens=max_new_tokens, **options)
        assert torch.equal(got, plain)


def test_generation_up_to_the_context_window(target):
    context = target.config.context_length
    ids = torch.tensor([REPETITIVE])
    plain = generate(target, ids, max_length=context)
    got = generate(target, ids, max_length=context, assistant_model=target, num_assistant_tokens=12)
    assert torch.equal(got, plain) and got.shape[1] == context


# ---- sampling keeps the target's distribution ------------------------------------------------------------
SAMPLING = dict(do_sample=True, temperature=1.5, top_k=3)
VOCAB = 24


@pytest.fixture(scope="module")
def small():
    """A tiny model with a small vocabulary whose every token appears in the prompt (n-gram drafts exist)."""
    config = GPT4Config(
        vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=32, context_length=64, positions="rope",
        norm="rmsnorm", mlp="swiglu", bias=False,
    )  # fmt: skip
    torch.manual_seed(3)
    model = GPT4LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.3)
    prompt = torch.randperm(VOCAB, generator=torch.Generator().manual_seed(1)).tolist()
    return model, prompt + prompt[:5]


def exact_joint(model, prompt, n_tokens=3):
    """{(t1, .., tn): probability} of the first n sampled tokens, from the processed next-token scores."""
    config = GenerationConfig(**SAMPLING)
    processors = build_processors(config, len(prompt))
    joint = {(): 1.0}
    for _ in range(n_tokens):
        grown = {}
        for prefix, mass in joint.items():
            ids = torch.tensor([prompt + list(prefix)])
            scores = model(ids).logits[:, -1].float()
            for process in processors:
                scores = process(ids, scores)
            for token, prob in enumerate(scores.softmax(-1)[0].tolist()):
                if prob > 0:
                    grown[prefix + (token,)] = mass * prob
        joint = grown
    return joint


@pytest.mark.parametrize("drafter", ["plain", "ngram", "draft"])
def test_sampled_tokens_follow_the_target_distribution(small, drafter):
    from scipy.stats import chisquare

    model, prompt = small
    n = 2000
    options = dict(
        plain={}, ngram=dict(prompt_lookup_num_tokens=3),
        draft=dict(assistant_model=perturbed(model, 0.2), num_assistant_tokens=2),
    )[drafter]  # fmt: skip
    out = generate(  # 5 tokens: the first round drafts 3; the first 3 tokens are compared
        model, torch.tensor([prompt]), max_new_tokens=5, num_return_sequences=n, seed=0,
        return_dict_in_generate=True, **SAMPLING, **options,
    )  # fmt: skip
    joint = exact_joint(model, prompt)
    cells = sorted(joint)
    seen = [tuple(row) for row in out.sequences[:, len(prompt) : len(prompt) + 3].tolist()]
    assert set(seen) <= set(cells)
    observed = [seen.count(cell) for cell in cells]
    total = sum(joint.values())
    expected = [joint[cell] / total * n for cell in cells]
    assert chisquare(observed, expected).pvalue > 1e-3
    if drafter != "plain":
        stats = out.speculation
        assert stats.drafted > 2 * n and min(stats.accepted, stats.drafted - stats.accepted) > n // 20


# ---- bad input -----------------------------------------------------------------------------------------------
def test_bad_speculative_arguments_raise_named_errors(target, byte_model):
    ids = torch.tensor([PLAIN])
    context = target.config.context_length
    cases = [
        (dict(prompt_lookup_num_tokens=0), "prompt_lookup_num_tokens"),
        (dict(prompt_lookup_num_tokens=-2), "prompt_lookup_num_tokens"),
        (dict(prompt_lookup_num_tokens=True), "prompt_lookup_num_tokens"),
        (dict(prompt_lookup_num_tokens=context), "too large"),
        (dict(assistant_model=target, num_assistant_tokens=0), "num_assistant_tokens"),
        (dict(assistant_model=target, num_assistant_tokens=context), "too large"),
        (dict(assistant_model=byte_model), "vocabulary"),
        (dict(assistant_model="small"), "gptkit model"),
        (dict(assistant_model=target, prompt_lookup_num_tokens=3), "not both"),
        (dict(assistant_model=target, num_beams=2), "num_beams"),
        (dict(prompt_lookup_num_tokens=3, num_beams=2), "num_beams"),
        (dict(max_matching_ngram_size=0, prompt_lookup_num_tokens=3), "max_matching_ngram_size"),
    ]
    for options, message in cases:
        with pytest.raises(GenerationError, match=message):
            generate(target, ids, max_new_tokens=4, **options)


# ---- the bundled GGUF (quantized blocks, native kernels) ------------------------------------------------------
COPY_TEXT = (
    "The history of natural language processing generally started in the 1950s, although work can be "
    "found from earlier periods. In 1950, Alan Turing published an article titled 'Computing Machinery "
    "and Intelligence' which proposed what is now called the Turing test as a criterion of intelligence."
)


@pytest.mark.slow
def test_bundled_gguf_prompt_lookup_equals_plain_greedy(bundled_gguf):
    from gptkit.loader import load

    model, tokenizer = load(str(bundled_gguf))
    chats = [f"Repeat this text exactly:\n\n{COPY_TEXT}", "Name three colours."]
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True)
        for c in chats
    ]
    ids, mask = left_pad(prompts)
    plain = generate(model, ids, mask, max_new_tokens=40)
    got, stats = speculative(model, ids, mask, max_new_tokens=40, prompt_lookup_num_tokens=7)
    assert torch.equal(got, plain)
    assert stats.acceptance_rate > 0.5 and stats.accepted > 20  # the copy is mostly drafted
