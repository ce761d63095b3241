"""How many tokens to draft: the cost-aware draft length the Engine's n-gram speculation uses."""

from __future__ import annotations

import pytest

from gptkit.generation.drafters import DraftLength, best_draft_length


def expected_rate(acceptance: float, k: int, cost: float) -> float:
    return sum(acceptance**i for i in range(k + 1)) / (1 + cost * k)


@pytest.mark.parametrize("acceptance", [0.0, 0.2, 0.3, 0.5, 0.55, 0.63, 0.8, 0.95, 1.0])
@pytest.mark.parametrize("cap", [1, 2, 5, 10])
def test_best_length_maximises_tokens_per_cost(acceptance, cap):
    k = best_draft_length(acceptance, cap, 0.3)
    rates = [expected_rate(acceptance, j, 0.3) for j in range(cap + 1)]
    assert 0 <= k <= cap and rates[k] == pytest.approx(max(rates))


def test_lengths_on_this_machines_cost():
    assert best_draft_length(0.2, 5, 0.3) == 0  # drafting would be slower than plain decoding
    assert best_draft_length(0.55, 5, 0.3) == 1  # the bundled model on prompt-copying work
    assert best_draft_length(0.63, 5, 0.3) == 2
    assert best_draft_length(0.95, 5, 0.3) == 5  # copying: as many as allowed
    assert best_draft_length(1.0, 10, 0.0) == 10


def test_rejections_stop_drafting_and_probes_notice_copying():
    length = DraftLength(cap=5)
    assert length.next() == 1  # the prior: a = 0.5
    for _ in range(6):
        length.update(drafted=1, accepted=0)
    assert length.acceptance < 0.2
    quiet = [length.next() for _ in range(DraftLength.PROBE_EVERY)]
    assert quiet == [0] * (DraftLength.PROBE_EVERY - 1) + [1]  # one probe draft every PROBE_EVERY steps
    for _ in range(12):
        length.update(drafted=5, accepted=5)
    assert length.acceptance > 0.9 and length.next() == 5


def test_a_stop_inside_the_drafts_is_not_counted_twice():
    length = DraftLength(cap=4)
    length.update(drafted=0, accepted=0)  # no draft (no n-gram match): nothing learnt
    assert length.acceptance == 0.5
    length.update(drafted=3, accepted=2)  # two kept, then a rejection
    assert length.accepted == pytest.approx(0.8 * 1 + 2) and length.checked == pytest.approx(0.8 * 2 + 3)
