"""Batched scoring (shared prefix once in a KV cache, padded batches) equals scoring one pair at a time,
for score_continuations itself and for every scorer built on it; and the shared work really runs once."""

from __future__ import annotations

import json

import pytest
import torch

import gptkit.eval.common
import gptkit.tasks.base
from gptkit import ConfigError, GPT4Config, GPT4LMHeadModel, GPT4Tokenizer, pipeline
from gptkit.cli import main
from gptkit.eval.bias import BiasPair, pair_scores
from gptkit.eval.common import LoadedModel, load_model
from gptkit.eval.multiple_choice import evaluate_multiple_choice
from gptkit.eval.perplexity import score_text
from gptkit.scoring.loglik import Loglik, score_continuations

TOLERANCE = 1e-4  # absolute, on each token's log-probability (fp32); a sum of n of them: n x TOLERANCE


@torch.inference_mode()
def one_at_a_time(model, pairs, **_ignored) -> list[Loglik]:
    """The unbatched scorer, written out: one full forward pass per pair, no cache, no padding."""
    window, results = model.config.context_length, []
    for context, continuation in pairs:
        keep = window - len(continuation)
        ids = torch.tensor([(list(context)[-keep:] if keep else []) + list(continuation)])
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)  # (T, V)
        first = max(ids.shape[1] - len(continuation), 1)
        targets, predicted = ids[0, first:], logprobs[first - 1 : -1]
        token_lp = predicted.gather(-1, targets[:, None]).squeeze(-1)
        greedy = bool((predicted.argmax(-1) == targets).all())
        results.append(Loglik(float(token_lp.sum()), targets.numel(), greedy, tuple(token_lp.tolist())))
    return results


def assert_same_scores(batched: list[Loglik], single: list[Loglik]) -> None:
    assert len(batched) == len(single)
    for b, s in zip(batched, single, strict=True):
        assert b.n_tokens == s.n_tokens and b.is_greedy == s.is_greedy
        assert b.logprob == pytest.approx(s.logprob, abs=TOLERANCE * max(1, s.n_tokens))
        assert b.token_logprobs == pytest.approx(s.token_logprobs, abs=TOLERANCE)


def both_ways(monkeypatch, module, run):
    """run() with ``module.score_continuations`` the batched scorer, then one_at_a_time:
    {"batched": (result, scores), "single": (result, scores)}."""
    out = {}
    for name, scorer in (("batched", score_continuations), ("single", one_at_a_time)):
        scores: list[Loglik] = []

        def recording(model, pairs, _scorer=scorer, _scores=scores, **options):
            result = _scorer(model, pairs, **options)
            _scores.extend(result)
            return result

        monkeypatch.setattr(module, "score_continuations", recording)
        out[name] = (run(), scores)
    assert out["batched"][1], "the scorer did not score anything"
    assert_same_scores(out["batched"][1], out["single"][1])
    return out


def random_pairs(vocab: int, prefix: list[int]) -> list[tuple[list[int], list[int]]]:
    """Pairs with a shared prefix, repeated contexts, empty contexts and one- to many-token continuations."""
    g = torch.Generator().manual_seed(1)
    draw = lambda n: torch.randint(1, vocab, (n,), generator=g).tolist()  # noqa: E731
    pairs = [
        (prefix + draw(n), draw(m)) for n, m in [(0, 1), (3, 1), (7, 4), (1, 9), (12, 2), (5, 5), (3, 3)]
    ]
    pairs += [
        (pairs[2][0], draw(3)),
        (pairs[2][0], draw(1)),
        ([], draw(3)),
        ([], draw(1)),
        (draw(2), draw(2)),
    ]
    return pairs


def sliding_llama() -> GPT4LMHeadModel:
    """A tiny GQA / RoPE / RMSNorm / SwiGLU model with a sliding window shorter than its context."""
    torch.manual_seed(0)
    config = GPT4Config(
        vocab_size=60, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, positions="rope", norm="rmsnorm",
        mlp="swiglu", bias=False, context_length=40, sliding_window=8,
    )  # fmt: skip
    return GPT4LMHeadModel(config).eval()


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_score_continuations_equals_one_at_a_time(tiny, batch_size, single_thread):
    for model in (tiny.model, sliding_llama()):
        pairs = random_pairs(model.config.vocab_size, prefix=[7, 8, 9, 10, 11])
        pairs.append((list(range(1, 50)), [3, 4]))  # longer than the window: cut from the left
        assert_same_scores(
            score_continuations(model, pairs, batch_size=batch_size), one_at_a_time(model, pairs)
        )


def test_shared_prefix_and_each_context_run_once(tiny, monkeypatch, single_thread):
    fed = []
    forward = tiny.model.forward
    monkeypatch.setattr(tiny.model, "forward", lambda ids, attention_mask=None, **kw: (
        fed.append(int(ids.numel() if attention_mask is None else attention_mask.sum())),
        forward(ids, attention_mask, **kw),
    )[1])  # fmt: skip
    prefix, texts, labels = list(range(1, 31)), [[40 + i, 41 + i, 42] for i in range(10)], [[5], [6]]
    pairs = [(prefix + text, label) for text in texts for label in labels]
    with torch.inference_mode():
        scores = score_continuations(tiny.model, pairs, batch_size=4)
    assert sum(fed) == len(prefix) + sum(map(len, texts))  # 60, not 20 x 34 = 680 tokens
    assert_same_scores(scores, one_at_a_time(tiny.model, pairs))


def test_progress_counts_every_pair(tiny):
    done = []
    score_continuations(tiny.model, random_pairs(256, [1, 2]), batch_size=2, progress=done.append)
    assert sum(done) == len(random_pairs(256, [1, 2]))


# ----- every scorer, batched vs one at a time: tiny models --------------------------------------------
MC_ITEMS = [
    {"query": "ab", "choices": ["c", "cccccc", "xyz"], "gold": 0},
    {"query": "hello", "choices": ["world", "w", "é"], "gold": 1},
    {"query": "one two", "choices": ["three", "3"], "gold": 1},
    {"query": "q", "choices": ["long answer", "no"], "gold": 0},
]
BIAS_PAIRS = [
    BiasPair("the cat sat on the mat", "the dog sat on the mat", "stereo", "animal"),
    BiasPair("she is a nurse", "he is a nurse", "antistereo", "gender"),
    BiasPair("old people are slow", "young people are slow", "stereo", "age"),
]
SENTENCES = ["I love this movie, it is wonderful!", "The service was terrible.", "It was fine, I guess."]
TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 3


def test_multiple_choice_scores_equal_one_at_a_time(tiny, tmp_path, monkeypatch):
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in MC_ITEMS))
    run = lambda: evaluate_multiple_choice(tiny, path, num_fewshot=2, batch_size=4).metrics  # noqa: E731
    out = both_ways(monkeypatch, gptkit.eval.common, run)
    assert out["batched"][0] == out["single"][0]


def test_perplexity_equals_one_at_a_time(tiny, monkeypatch):
    run = lambda: score_text(tiny, TEXT, window=48, stride=20, batch_size=3)  # noqa: E731
    out = both_ways(monkeypatch, gptkit.eval.common, run)
    assert out["batched"][0].nll == pytest.approx(
        out["single"][0].nll, abs=TOLERANCE * out["single"][0].n_tokens
    )


def test_bias_scores_equal_one_at_a_time(tiny, monkeypatch):
    for scoring in ("shared", "full"):
        out = both_ways(
            monkeypatch, gptkit.eval.common, lambda s=scoring: pair_scores(tiny, BIAS_PAIRS, s, 4)
        )
        for batched, single in zip(out["batched"][0], out["single"][0], strict=True):
            assert batched == pytest.approx(single, abs=TOLERANCE * 32)  # sums over < 32 tokens


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    return GPT4Tokenizer.from_pretrained("smollm2-135m-instruct")


@pytest.mark.parametrize("chat", [True, False], ids=["chat-template", "few-shot"])
def test_classification_equals_one_at_a_time(smollm2_tokenizer, monkeypatch, chat, single_thread):
    torch.manual_seed(0)
    config = GPT4Config(
        vocab_size=smollm2_tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=32, context_length=512
    )
    classifier = pipeline("sentiment-analysis", GPT4LMHeadModel(config).eval(), smollm2_tokenizer)
    run = lambda: classifier(SENTENCES, top_k=None, use_chat_template=chat, batch_size=2)  # noqa: E731
    out = both_ways(monkeypatch, gptkit.tasks.base, run)
    for batched, single in zip(out["batched"][0], out["single"][0], strict=True):
        assert [d["label"] for d in batched] == [d["label"] for d in single]
        assert [d["score"] for d in batched] == pytest.approx([d["score"] for d in single], abs=TOLERANCE)


# ----- the bundled model (fp32 reference path) --------------------------------------------------------
@pytest.fixture(scope="module")
def bundled_fp32() -> LoadedModel:
    return load_model("smollm2-135m-instruct", dtype="float32")


@pytest.mark.slow
def test_bundled_scorers_equal_one_at_a_time(bundled_fp32, tmp_path, monkeypatch):
    loaded = bundled_fp32
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in MC_ITEMS[:2]))
    both_ways(monkeypatch, gptkit.eval.common, lambda: evaluate_multiple_choice(loaded, path, num_fewshot=1))
    both_ways(monkeypatch, gptkit.eval.common, lambda: score_text(loaded, TEXT[:90], window=16, stride=8))
    both_ways(monkeypatch, gptkit.eval.common, lambda: pair_scores(loaded, BIAS_PAIRS[:2], "shared", 16))
    classifier = pipeline("sentiment-analysis", loaded.model, loaded.tokenizer)
    out = both_ways(monkeypatch, gptkit.tasks.base, lambda: classifier(SENTENCES[:2], top_k=None))
    assert [r[0]["label"] for r in out["batched"][0]] == ["POSITIVE", "NEGATIVE"]


def test_a_batch_size_below_one_is_refused(tiny, tmp_path, capsys):
    with pytest.raises(ConfigError, match="batch_size"):
        score_continuations(tiny.model, [([1], [2])], batch_size=0)
    assert main(["eval", "bias", str(tmp_path / "pairs.csv"), "--batch-size", "0"]) == 2  # a usage error
    assert "--batch-size: must be a positive integer" in capsys.readouterr().err
