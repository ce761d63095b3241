"""KVCache.row_range: a view over some rows that writes through and leaves the other rows alone."""

from __future__ import annotations

import torch


def test_prefill_through_a_row_range_touches_only_that_row(model):
    cache = model.new_cache(3, 16)
    model(torch.tensor([[4, 5, 6], [7, 8, 9], [1, 2, 3]]), cache=cache)
    stacked = {
        name: lambda c, name=name: torch.stack(getattr(c, name), 1) for name in ("k", "v")
    }  # (B, L, ...)
    state = {"valid": lambda c: c.valid, "next_column": lambda c: c.next_column, **stacked}
    before = {name: read(cache).clone() for name, read in state.items()}
    cache.reset_rows([1])
    row = cache.row_range(1, 2)
    alone = model(torch.tensor([[9, 9, 9, 9, 9]]), cache=row, logits_to_keep=1).logits
    fresh = model(torch.tensor([[9, 9, 9, 9, 9]]), logits_to_keep=1).logits
    torch.testing.assert_close(alone, fresh)
    assert cache.next_column.tolist() == [3, 5, 3] and int(cache.valid[1].sum()) == 5
    for name, old in before.items():
        for other in (0, 2):
            assert torch.equal(state[name](cache)[other], old[other])
