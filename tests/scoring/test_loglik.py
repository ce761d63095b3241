"""Log-likelihood scoring equals a direct log-softmax computation, whatever the batching."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gptkit import ContextLengthError, GPT4Config, GPT4LMHeadModel
from gptkit.scoring.loglik import score_continuations


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = GPT4Config(vocab_size=50, n_layer=2, n_head=2, n_embd=16, context_length=24)
    return GPT4LMHeadModel(config).eval()


@torch.inference_mode()
def direct(model, context, continuation):
    ids = torch.tensor([context + continuation])
    logprobs = torch.log_softmax(model(ids).logits[0], dim=-1)
    positions = range(len(context), len(context) + len(continuation))
    return sum(float(logprobs[p - 1, ids[0, p]]) for p in positions)


def test_scores_equal_direct_computation_in_any_batch_size(model):
    gen = torch.Generator().manual_seed(1)
    pairs = [
        (
            torch.randint(0, 50, (n,), generator=gen).tolist(),
            torch.randint(0, 50, (m,), generator=gen).tolist(),
        )
        for n, m in [(3, 1), (7, 4), (1, 9), (12, 2), (5, 5)]
    ]
    for batch_size in (1, 2, 8):
        results = score_continuations(model, pairs, batch_size=batch_size)
        for (context, continuation), result in zip(pairs, results, strict=True):
            assert result.n_tokens == len(continuation)
            assert result.logprob == pytest.approx(direct(model, context, continuation), abs=1e-4)


def test_is_greedy_is_true_exactly_for_the_argmax_continuation(model):
    context = [1, 2, 3]
    with torch.inference_mode():
        best = int(model(torch.tensor([context])).logits[0, -1].argmax())
    worst = int(model(torch.tensor([context])).logits[0, -1].argmin())
    greedy, other = score_continuations(model, [(context, [best]), (context, [worst])])
    assert greedy.is_greedy and not other.is_greedy
    assert greedy.logprob > other.logprob


def test_long_contexts_are_cut_from_the_left(model):
    context, continuation = list(range(40)), [7, 8]
    (result,) = score_continuations(model, [(context, continuation)])
    assert result.logprob == pytest.approx(direct(model, context[-22:], continuation), abs=1e-4)
    with pytest.raises(ContextLengthError, match="30 tokens"):
        score_continuations(model, [([1], list(range(30)))])


def test_the_package_loads_no_torch_for_command_line_help():
    code = "import sys, gptkit.scoring; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_old_module_path_still_works():
    import gptkit.eval.loglik as old
    import gptkit.scoring
    import gptkit.scoring.loglik as new

    assert old.score_continuations is new.score_continuations and old.Loglik is new.Loglik
    assert old.SCORING_BATCH_SIZE == new.SCORING_BATCH_SIZE == gptkit.scoring.SCORING_BATCH_SIZE == 16
