"""One seed, independent streams: every consumer of randomness draws from its own generator."""

from __future__ import annotations

import itertools
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

import retentive as R
from retentive.data import TensorChunk
from retentive.memory.policies import ReservoirPolicy
from retentive.models import MLP
from retentive.streams import Purpose, memory_seeds, stream_seed

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)


def test_every_purpose_and_update_gets_its_own_seed_and_stream():
    for seed in (0, 7):
        seeds = {(u, p): stream_seed(seed, u, p) for u in range(3) for p in Purpose}
        assert len(set(seeds.values())) == len(seeds)
        draws = {
            key: tuple(torch.rand(4, generator=torch.Generator().manual_seed(s)).tolist()) for key, s in seeds.items()
        }
        assert len(set(draws.values())) == len(draws)  # first draws pairwise different
    assert stream_seed(3, 1, Purpose.DATA_ORDER) == stream_seed(3, 1, Purpose.DATA_ORDER)  # reproducible
    assert 0 <= stream_seed(3, 1, Purpose.GLOBAL, bits=32) < 2**32


class Seeds(pl.Callback):
    """What each consumer was seeded with when training started."""

    def on_train_start(self, trainer, module):
        memory = module.memory
        self.seen = {
            "global": torch.initial_seed(),
            "data order": trainer.train_dataloader.generator.initial_seed(),
            "memory insert": memory.insert_generator.initial_seed(),
            "memory sample": memory.sample_generator.initial_seed(),
            "components": module.generator.initial_seed(),
        }


def test_the_updater_seeds_each_consumer_from_its_own_stream():
    callback = Seeds()
    g = torch.Generator().manual_seed(0)
    chunk = TensorChunk(torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g))
    updater = R.ExperienceReplayModelUpdater(
        MLP(hidden=(8,)),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        memory_size=20,
        batch_size=16,
        seed=11,
        callbacks=[callback],
        **QUIET,
    )
    for update in range(2):
        updater.update(chunk)
        insert, sample = memory_seeds(11, update)
        assert callback.seen == {
            "global": stream_seed(11, update, Purpose.GLOBAL, bits=32),
            "data order": stream_seed(11, update, Purpose.DATA_ORDER),
            "memory insert": insert,
            "memory sample": sample,
            "components": stream_seed(11, update, Purpose.COMPONENTS),
        }
        assert len(set(callback.seen.values())) == len(callback.seen)


def _kept(order_seed: int, insert_seed: int, n: int = 40, capacity: int = 8, batch: int = 4):
    """(arrival positions, sample ids) of what a reservoir keeps from samples arriving in a seeded order."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(order_seed))
    generator = torch.Generator().manual_seed(insert_seed)
    position = torch.full((capacity,), -1)
    policy = ReservoirPolicy()
    for start in range(0, n, batch):
        source, slots = policy.select(batch, start, min(start, capacity), capacity, None, None, generator)
        position[slots] = start + source
    return position, order[position]


@pytest.mark.slow
def test_accepted_samples_are_independent_of_the_data_order():
    """Across seeds, which sample ends up kept and at which arrival position it came are
    independent: a chi-square test of independence on the 4 x 4 table (position quarter x
    sample-id quarter) of the kept samples, 9 degrees of freedom (above 27.9: p < 0.001). The
    marginals are checked too: every sample and every arrival position is kept equally often."""
    n, runs = 40, 1500
    table = torch.zeros(4, 4)
    by_id = torch.zeros(n)
    for s in range(runs):
        insert, _ = memory_seeds(s, 0)
        position, ids = _kept(stream_seed(s, 0, Purpose.DATA_ORDER), insert)
        table.index_put_((position * 4 // n, ids * 4 // n), torch.ones(len(ids)), accumulate=True)
        by_id[ids] += 1
    expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / table.sum()
    assert float(((table - expected) ** 2 / expected).sum()) < 27.9, table
    assert _chi_square(by_id) < 77.4, by_id  # 39 degrees of freedom, p < 0.001
    assert _chi_square(table.sum(1)) < 16.3, table.sum(1)  # the reservoir keeps every position alike


def _chi_square(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum())


def test_a_memory_saved_with_one_generator_loads_and_continues_on_the_new_scheme():
    old = R.ReplayBuffer(10, seed=4)
    old.add({"inputs": torch.rand(6, 3), "targets": torch.arange(6), "task_ids": torch.zeros(6, dtype=torch.long)})
    state = old.state_dict()
    generators = state.pop("generators")
    state["generator"] = generators["insert"]  # how a state folder written before the change stores it
    new = R.ReplayBuffer(10)
    new.load_state_dict(state)
    assert torch.equal(new.insert_generator.get_state(), generators["insert"])
    assert torch.equal(new.sample_generator.get_state(), generators["insert"])
    new.reseed(*memory_seeds(4, 1))
    assert not torch.equal(new.insert_generator.get_state(), new.sample_generator.get_state())
    for a, b in itertools.combinations([new.insert_generator, new.sample_generator], 2):
        assert not torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
