"""The replay buffer: vectorised reservoir insertion, sampling, metadata refresh, state."""

from __future__ import annotations

import math

import pytest
import torch

from retentive.errors import MemoryShapeError
from retentive.memory import ReplayBuffer, ReservoirPolicy


def _batch(start: int, n: int, dim: int = 3) -> dict[str, torch.Tensor]:
    ids = torch.arange(start, start + n)
    return {
        "inputs": ids[:, None].float().expand(n, dim).clone(),
        "targets": ids % 10,
        "task_ids": torch.zeros(n, dtype=torch.long),
    }


def test_fills_in_order_then_stays_full():
    memory = ReplayBuffer(10)
    memory.add(_batch(0, 4))
    assert len(memory) == 4 and memory.seen == 4
    assert memory.storage["inputs"][:4, 0].tolist() == [0, 1, 2, 3]
    memory.add(_batch(4, 20))
    assert len(memory) == 10 and memory.seen == 24
    assert memory.storage["inputs"].shape == (10, 3)


@pytest.mark.slow
def test_reservoir_keeps_every_sample_with_equal_probability():
    """Stream 200 ids through a 20-slot memory 3000 times; each id is kept with p = 20/200."""
    capacity, stream, trials = 20, 200, 3000
    counts = torch.zeros(stream)
    for trial in range(trials):
        memory = ReplayBuffer(capacity, seed=trial)
        for start in range(0, stream, 16):  # uneven batches, including a partial one
            memory.add(_batch(start, min(16, stream - start), dim=1))
        counts += torch.bincount(memory.storage["inputs"][:, 0].long(), minlength=stream)
    p = capacity / stream
    expected = trials * p
    sd = math.sqrt(trials * p * (1 - p))
    assert counts.sum() == trials * capacity
    # every id within 5 sd of its expectation, and early/late halves indistinguishable
    assert (counts - expected).abs().max() < 5 * sd
    assert abs(counts[:100].mean() - counts[100:].mean()) < 3 * sd / math.sqrt(100) * math.sqrt(2) + 1e-9


def test_batch_insert_equals_sequential_algorithm_on_collisions():
    """Two samples of one batch drawn for one slot: the later wins, as in Vitter's sequential loop."""
    policy = ReservoirPolicy()
    g = torch.Generator().manual_seed(3)
    source, slots = policy.select(n=5000, seen=10, size=10, capacity=10, targets=None, stored_targets=None, generator=g)
    assert slots.unique().numel() == slots.numel()
    g = torch.Generator().manual_seed(3)
    draws = (torch.rand(5000, generator=g, dtype=torch.float64) * torch.arange(11, 5011)).long()
    final = {}
    for i, r in enumerate(draws.tolist()):
        if r < 10:
            final[r] = i
    assert dict(zip(slots.tolist(), source.tolist())) == final


def test_sample_is_distinct_and_within_the_filled_part():
    memory = ReplayBuffer(50)
    memory.add(_batch(0, 30))
    batch = memory.sample(20)
    assert len(batch) == 20 and batch.indices.unique().numel() == 20
    assert (batch.indices < 30).all()
    assert torch.equal(batch.inputs, memory.storage["inputs"][batch.indices])
    assert len(memory.sample(100)) == 30
    assert ReplayBuffer(5).sample(3) is None


def test_shape_and_dtype_mismatch_names_key_and_shapes():
    memory = ReplayBuffer(10)
    memory.add(_batch(0, 2))
    bad = _batch(2, 2, dim=4)
    with pytest.raises(MemoryShapeError, match=r"'inputs'.*\(3,\).*\(4,\)"):
        memory.add(bad)
    bad = _batch(2, 2)
    bad["inputs"] = bad["inputs"].double()
    with pytest.raises(MemoryShapeError, match="float64"):
        memory.add(bad)
    with pytest.raises(MemoryShapeError, match="keys"):
        memory.add({**_batch(2, 2), "logits": torch.zeros(2, 10)})


def test_ema_refresh_formula():
    memory = ReplayBuffer(4)
    batch = _batch(0, 4)
    batch["logits"] = torch.ones(4, 2)
    memory.add(batch)
    memory.refresh(torch.tensor([1, 3]), "logits", torch.full((2, 2), 3.0), gamma=0.25)
    # 0.25 * 1 + 0.75 * 3 = 2.5 for the refreshed rows; the others untouched
    assert memory.storage["logits"][:, 0].tolist() == [1.0, 2.5, 1.0, 2.5]


def test_state_round_trip_keeps_content_and_randomness():
    memory = ReplayBuffer(8, seed=5)
    memory.add(_batch(0, 13))
    state = memory.state_dict()
    assert all(v.shape[0] == 8 for v in state["storage"].values())
    clone = ReplayBuffer(8, seed=99)
    clone.load_state_dict(state)
    for key in memory.storage:
        assert torch.equal(clone.storage[key], memory.storage[key])
    memory.add(_batch(13, 7))
    clone.add(_batch(13, 7))
    assert torch.equal(clone.storage["inputs"], memory.storage["inputs"])
    assert torch.equal(clone.sample(4).indices, memory.sample(4).indices)
    with pytest.raises(MemoryShapeError, match="memory_size=4"):
        ReplayBuffer(4).load_state_dict(state)


def test_state_dict_copies_out_of_views():
    """A memory filled from views of a large tensor saves only its own rows."""
    big = torch.randn(10_000, 784)
    memory = ReplayBuffer(5)
    memory.add(
        {"inputs": big[:5], "targets": torch.zeros(5, dtype=torch.long), "task_ids": torch.zeros(5, dtype=torch.long)}
    )
    stored = memory.state_dict()["storage"]["inputs"]
    assert stored.untyped_storage().nbytes() == 5 * 784 * 4


def test_zero_capacity_counts_but_stores_nothing():
    memory = ReplayBuffer(0)
    memory.add(_batch(0, 5))
    assert len(memory) == 0 and memory.seen == 5 and memory.sample(3) is None
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(-1)


def test_storage_grows_as_it_fills_and_a_restore_allocates_only_the_saved_rows():
    memory = ReplayBuffer(1000)
    memory.add(_batch(0, 3))
    assert memory.allocated == 3
    memory.add(_batch(3, 4))
    assert memory.allocated == 7 and memory.storage["inputs"][:7, 0].tolist() == list(range(7))
    memory.add(_batch(7, 1))
    assert memory.allocated == 14  # doubled, the rows kept
    memory.add(_batch(8, 2000))
    assert memory.allocated == 1000 and len(memory) == 1000  # capped at the capacity
    restored = ReplayBuffer(1000)
    restored.load_state_dict(ReplayBuffer(1000).state_dict() | {"size": 0, "storage": {}})
    assert restored.allocated == 0
    half = ReplayBuffer(1000)
    half.add(_batch(0, 10))
    restored.load_state_dict(half.state_dict())
    assert restored.allocated == 10 and torch.equal(restored.storage["inputs"], half.storage["inputs"][:10])


def test_a_rebuilt_memory_grows_past_the_rows_it_was_restored_with():
    """Exemplar selection rewrites the whole memory; after a restore it may hold more rows than saved."""
    from retentive.components.exemplars import replace_memory

    saved = ReplayBuffer(50)
    saved.add(_batch(0, 5))
    memory = ReplayBuffer(50)
    memory.load_state_dict(saved.state_dict())
    assert memory.allocated == 5
    replace_memory(memory, _batch(100, 30), offered=30)
    assert len(memory) == 30 and memory.allocated >= 30
    assert memory.storage["inputs"][:30, 0].tolist() == list(range(100, 130))


def test_a_saved_size_outside_the_capacity_is_refused():
    saved = ReplayBuffer(10)
    saved.add(_batch(0, 4))
    with pytest.raises(MemoryShapeError, match="holds 11 samples, outside"):
        ReplayBuffer(10).load_state_dict(saved.state_dict() | {"size": 11})
