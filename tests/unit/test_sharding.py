"""Batches for data-parallel ranks: each sample once per epoch, ranks in step, no padding batches."""

from __future__ import annotations

import pytest
import torch

from retentive.data.sharding import ShardedBatchSampler


def _epoch(n, batch, world, shuffle=True, seed=0):
    return [
        list(ShardedBatchSampler(n, batch, r, world, shuffle, torch.Generator().manual_seed(seed)))
        for r in range(world)
    ]


@pytest.mark.parametrize("n,batch,world", [(1000, 32, 2), (999, 32, 2), (1001, 16, 3), (70, 10, 4), (5, 32, 2)])
def test_every_sample_once_and_every_rank_a_batch_at_every_step(n, batch, world):
    ranks = _epoch(n, batch, world)
    steps = {len(batches) for batches in ranks}
    assert steps == {len(ShardedBatchSampler(n, batch, 0, world, True))}  # ranks stay in step
    flat = [i for batches in ranks for b in batches for i in b]
    assert sorted(flat) == list(range(n))  # no sample repeated, none left out
    for step in zip(*ranks):
        sizes = [len(b) for b in step]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1 and max(sizes) <= batch


def test_ranks_together_see_what_one_process_sees_at_world_size_times_the_batch():
    ranks = _epoch(999, 32, 2, seed=4)
    single = _epoch(999, 64, 1, seed=4)[0]
    for s, batch in enumerate(single):
        assert ranks[0][s] + ranks[1][s] == batch


def test_fewer_samples_than_ranks_repeat_the_first_ones():
    ranks = _epoch(2, 8, 3, shuffle=False)
    assert ranks == [[[0]], [[1]], [[0]]]


def test_a_new_order_each_epoch_and_in_order_without_shuffle():
    sampler = ShardedBatchSampler(20, 5, 0, 2, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert list(sampler) != list(sampler)
    assert list(ShardedBatchSampler(20, 5, 1, 2, shuffle=False)) == [[5, 6, 7, 8, 9], [15, 16, 17, 18, 19]]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="rank must lie in"):
        ShardedBatchSampler(10, 2, 2, 2, True)
    with pytest.raises(ValueError, match="batch_size"):
        ShardedBatchSampler(10, 0, 0, 1, True)


class _PlainDataset(torch.utils.data.Dataset):
    """A dataset without batch indexing: the loader fetches and collates sample by sample."""

    def __init__(self, n: int) -> None:
        self.x = torch.arange(n, dtype=torch.float32).unsqueeze(1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], torch.tensor(int(self.x[i]) % 10)


@pytest.mark.parametrize("batch_indexing", [True, False])
def test_updater_loaders_shard_both_kinds_of_dataset(batch_indexing):
    from torch import nn

    from retentive import ExperienceReplayModelUpdater
    from retentive.data import TensorChunk

    n = 77
    dataset = (
        TensorChunk(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n) % 10)
        if batch_indexing
        else _PlainDataset(n)
    )
    updater = ExperienceReplayModelUpdater(
        nn.Linear(1, 10),
        nn.CrossEntropyLoss(),
        lambda p: torch.optim.SGD(p, lr=0.1),
        memory_size=10,
        batch_size=16,
        logger=False,
        max_epochs=1,
    )
    seen = []
    for rank in range(2):
        batches = list(updater._loader(dataset, shuffle=True, seed=3, rank=rank, world_size=2))
        assert len(batches) == 5  # 77 samples, 8 new a rank and step -> 5 steps on both ranks
        seen += [int(v) for x, y in batches for v in x[:, 0]]
        assert all(torch.equal(y, x[:, 0].long() % 10) for x, y in batches)
    assert sorted(seen) == list(range(n))
