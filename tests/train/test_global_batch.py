"""The global batch: the same rows for any world size, disjoint across ranks, and grad_accum derived from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from gptkit.errors import ConfigError
from gptkit.train import TrainConfig, train
from gptkit.train.checkpoint import CheckpointWarning
from gptkit.train.data import PretrainBatches


def _step_rows(data_dir, world_size: int, grad_accum: int, steps: int = 3) -> list[list[list[tuple]]]:
    """For each optimizer step, each rank's windows (as tuples of input ids)."""
    sources = [
        PretrainBatches.open(
            str(data_dir), 2, 8, seed=3, rank=r, world_size=world_size, grad_accum=grad_accum
        )
        for r in range(world_size)
    ]
    out = []
    for _ in range(steps):
        per_rank = []
        for source in sources:
            rows = [tuple(x.tolist()) for _ in range(grad_accum) for x in source.next_batch()[0]]
            per_rank.append(rows)
        out.append(per_rank)
    return out


@pytest.mark.parametrize("world_size, grad_accum", [(2, 2), (4, 1)])
def test_ranks_share_the_one_process_global_batch_without_overlap(char_data, world_size, grad_accum):
    single = _step_rows(char_data, 1, 4)
    split = _step_rows(char_data, world_size, grad_accum)
    for one, many in zip(single, split, strict=True):
        # equal as multisets: the same global batch, and no drawn row read by two ranks
        assert sorted(one[0]) == sorted(row for rows in many for row in rows)


def test_state_at_a_step_boundary_is_the_same_for_any_world_size(char_data):
    one = PretrainBatches.open(str(char_data), 2, 8, seed=3, grad_accum=2)
    two = PretrainBatches.open(str(char_data), 2, 8, seed=3, rank=1, world_size=2)
    for _ in range(2):
        one.next_batch()
    two.next_batch()
    assert one.state_dict() == two.state_dict()
    one.next_batch()  # half of the next global batch: the state still points at its start
    assert one.state_dict() == two.state_dict()
    resumed = PretrainBatches.open(str(char_data), 2, 8, seed=3, grad_accum=2)
    resumed.load_state_dict(one.state_dict())
    two.load_state_dict(one.state_dict())
    resumed_micro = [resumed.next_batch()[0] for _ in range(2)]
    assert torch.equal(two.next_batch()[0], resumed_micro[1])  # rank 1 of 2 holds the second micro-batch


def test_eval_batches_cover_the_same_windows_for_any_world_size(char_data):
    one = PretrainBatches.open(str(char_data), 2, 8, seed=3, grad_accum=2)
    ranks = [PretrainBatches.open(str(char_data), 2, 8, seed=3, rank=r, world_size=2) for r in (0, 1)]
    whole = sorted(tuple(x.tolist()) for batch, _ in one.eval_batches(3) for x in batch)
    shared = sorted(tuple(x.tolist()) for s in ranks for batch, _ in s.eval_batches(3) for x in batch)
    assert whole == shared


def test_grad_accum_is_derived_from_the_global_batch():
    config = TrainConfig(batch_size=4, global_batch_size=32)
    assert [config.accumulation(w) for w in (1, 2, 4, 8)] == [8, 4, 2, 1]
    assert TrainConfig(batch_size=4, grad_accum=3).accumulation(2) == 3  # unset: today's meaning
    with pytest.raises(ConfigError, match="not a multiple"):
        config.accumulation(3)
    with pytest.raises(ConfigError, match="disagrees"):
        TrainConfig(batch_size=4, global_batch_size=32, grad_accum=3).accumulation(1)
    with pytest.raises(ConfigError, match="at least 1"):
        TrainConfig(global_batch_size=0)


def test_one_process_with_global_batch_equals_explicit_accumulation(char_data, tmp_path):
    common = dict(max_iters=3, eval_interval=3, checkpoint_interval=3)
    derived = train(tiny_config(char_data, tmp_path / "a", batch_size=2, global_batch_size=8, **common))
    explicit = train(tiny_config(char_data, tmp_path / "b", batch_size=2, grad_accum=4, **common))
    assert derived.losses == explicit.losses
    assert np.isfinite(derived.losses).all()


def test_resuming_with_another_global_batch_warns(char_data, tmp_path):
    train(tiny_config(char_data, tmp_path / "run", max_iters=2, checkpoint_interval=2, global_batch_size=8))
    with pytest.warns(CheckpointWarning, match="global_batch_size=8"):
        train(tiny_config(char_data, tmp_path / "run", max_iters=3, resume=True, global_batch_size=4))
