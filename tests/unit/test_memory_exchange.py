"""The distributed memory insert, with ranks simulated by threads: every replica must end
bit-identical to one process inserting the ranks' batches in rank order."""

from __future__ import annotations

import pytest
import torch
from rank_threads import run_ranks

from retentive.errors import MemoryShapeError
from retentive.memory import ReplayBuffer
from retentive.memory.exchange import Exchange, Refresh, distributed_add, pack, unpack
from retentive.memory.policies import ReservoirPolicy


def stream(seed: int, steps: int, world_size: int, sizes=None):
    """Per step and rank a batch of MNIST-like images (k/255), labels, task ids and logits."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for step in range(steps):
        per_rank = []
        for rank in range(world_size):
            n = sizes(step, rank) if sizes else 8
            per_rank.append(
                {
                    "inputs": torch.randint(0, 256, (n, 1, 4, 4), generator=g).float().div_(255.0),
                    "targets": torch.randint(0, 10, (n,), generator=g),
                    "task_ids": torch.full((n,), step // 5, dtype=torch.int64),
                    "logits": torch.randn(n, 10, generator=g),
                }
            )
        out.append(per_rank)
    return out


def assert_same_memory(a: ReplayBuffer, b: ReplayBuffer) -> None:
    assert (a.size, a.seen) == (b.size, b.seen)
    assert torch.equal(a.insert_generator.get_state(), b.insert_generator.get_state())
    assert torch.equal(a.sample_generator.get_state(), b.sample_generator.get_state())
    assert a.keys == b.keys or set(a.keys) == set(b.keys)
    for key in a.storage:
        assert a.storage[key].dtype == b.storage[key].dtype, key
        assert torch.equal(a.storage[key], b.storage[key]), key


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("input_dtype", [None, "uint8"])
def test_replicas_equal_one_process_inserting_the_union(world_size, input_dtype):
    # uneven batches: rank sizes differ on some steps, and the last step is short
    sizes = lambda step, rank: 8 if step < 39 else 1 + rank * 3  # noqa: E731
    batches = stream(seed=world_size, steps=40, world_size=world_size, sizes=sizes)

    def work(rank, exchange):
        memory = ReplayBuffer(50, seed=7, input_dtype=input_dtype)
        for per_rank in batches:
            distributed_add(memory, per_rank[rank], exchange)
        return memory

    replicas = run_ranks(world_size, work)
    single = ReplayBuffer(50, seed=7, input_dtype=input_dtype)
    for per_rank in batches:
        single.add({k: torch.cat([b[k] for b in per_rank]) for k in per_rank[0]})
    for replica in replicas:
        assert_same_memory(replica, single)
    assert single.seen == sum(len(b["targets"]) for step in batches for b in step)
    # the memory holds samples of every rank (a ~uniform sample of the union)
    assert len(single) == 50


def test_only_accepted_rows_travel_and_nothing_when_none_is_accepted():
    """Late in a long stream few samples are accepted; steps with none make no row exchange."""
    batches = stream(seed=1, steps=60, world_size=2)
    gathers_with_rows = []

    def work(rank, exchange):
        memory = ReplayBuffer(10, seed=3)
        calls = []
        counting = Exchange(rank, 2, lambda t: (calls.append(t.shape), exchange.gather(t))[1])
        for per_rank in batches:
            before = len(calls)
            distributed_add(memory, per_rank[rank], counting)
            calls_this_step = len(calls) - before
            gathers_with_rows.append((rank, calls_this_step))
        return memory

    replicas = run_ranks(2, work)
    assert_same_memory(*replicas)
    steps = [c for r, c in gathers_with_rows if r == 0]
    # header always; rows only when a sample was accepted: reservoir needs no target gather
    assert set(steps) == {1, 2} and steps[:2] == [2, 2] and steps.count(1) > 10


def test_refresh_of_replayed_metadata_is_applied_by_every_replica_in_rank_order():
    batches = stream(seed=5, steps=12, world_size=2)

    def work(rank, exchange):
        memory = ReplayBuffer(30, seed=11)
        gen = torch.Generator().manual_seed(100 + rank)
        for per_rank in batches:
            drawn = memory.sample(6, rank=rank, world_size=2)
            refresh = None
            if drawn is not None:
                fresh = torch.randn(len(drawn), 10, generator=gen)
                refresh = Refresh(drawn.indices, {"logits": fresh}, gamma=0.5)
            distributed_add(memory, per_rank[rank], exchange, refresh)
        return memory

    replicas = run_ranks(2, work)
    assert_same_memory(*replicas)

    # one process doing the same: both ranks' refreshes in rank order, then the union insert
    single = ReplayBuffer(30, seed=11)
    gens = [torch.Generator().manual_seed(100 + r) for r in range(2)]
    for per_rank in batches:
        state = single.sample_generator.get_state()
        drawn = []
        for r in range(2):
            single.sample_generator.set_state(state)
            drawn.append(single.sample(6, rank=r, world_size=2))
        for r, d in enumerate(drawn):
            if d is not None:
                single.refresh(d.indices, "logits", torch.randn(len(d), 10, generator=gens[r]), 0.5)
        single.add({k: torch.cat([b[k] for b in per_rank]) for k in per_rank[0]})
    assert_same_memory(replicas[0], single)


def test_ranks_replay_disjoint_samples_while_the_memory_is_large_enough():
    memory = ReplayBuffer(100, seed=0)
    memory.add(stream(0, 1, 1, sizes=lambda s, r: 100)[0][0])
    state = memory.sample_generator.get_state()
    draws = []
    for rank in range(3):
        memory.sample_generator.set_state(state)
        draws.append(memory.sample(30, rank=rank, world_size=3).indices)
    after = memory.sample_generator.get_state()
    assert torch.cat(draws).unique().numel() == 90
    # too small for disjoint shares: each rank still gets min(n, size) distinct samples
    for rank in range(3):
        memory.sample_generator.set_state(after)
        idx = memory.sample(40, rank=rank, world_size=3).indices
        assert idx.unique().numel() == 40
    # one rank alone draws exactly as before the world_size argument existed
    memory.sample_generator.set_state(state)
    solo = memory.sample(30).indices
    memory.sample_generator.set_state(state)
    assert torch.equal(solo, torch.rand(100, generator=memory.sample_generator).topk(30).indices)


def test_mismatched_replicas_are_refused():
    def work(rank, exchange):
        memory = ReplayBuffer(10)
        n = 4
        batch = {
            "inputs": torch.zeros(n, 3 + rank),
            "targets": torch.zeros(n, dtype=torch.long),
            "task_ids": torch.zeros(n, dtype=torch.long),
        }
        distributed_add(memory, batch, exchange)

    with pytest.raises(MemoryShapeError, match="different sizes"):
        run_ranks(2, work)


def test_pack_round_trips_mixed_dtypes():
    rows = {
        "inputs": torch.randint(0, 256, (3, 1, 2, 2), dtype=torch.uint8),
        "targets": torch.tensor([1, -2, 3]),
        "logits": torch.randn(3, 5),
        "features.x": torch.randn(3, 2, 2, dtype=torch.float64),
    }
    packed = pack(rows, 5, torch.device("cpu"))
    assert packed.shape == (5, 4 + 8 + 20 + 32) and packed[3:].eq(0).all()
    layout = [(k, rows[k].shape[1:], rows[k].dtype, rows[k][0].numel() * rows[k].element_size()) for k in sorted(rows)]
    back = unpack(packed[:3], layout)
    for key in rows:
        assert torch.equal(back[key], rows[key])


def test_reservoir_declares_it_needs_no_targets():
    assert ReservoirPolicy.uses_targets is False


class TargetReadingReservoir(ReservoirPolicy):
    """Reservoir that insists on the union's targets, to exercise the target all-gather."""

    uses_targets = True

    def __init__(self) -> None:
        self.offered: list[torch.Tensor] = []

    def select(self, n, seen, size, capacity, targets, stored_targets, generator):
        assert targets is not None and targets.shape == (n,)
        self.offered.append(targets.clone())
        return super().select(n, seen, size, capacity, targets, stored_targets, generator)


def test_a_policy_reading_targets_gets_the_union_targets_in_rank_order():
    sizes = lambda step, rank: 5 + rank  # noqa: E731
    batches = stream(seed=9, steps=6, world_size=2, sizes=sizes)

    def work(rank, exchange):
        memory = ReplayBuffer(20, policy=TargetReadingReservoir(), seed=2)
        for per_rank in batches:
            distributed_add(memory, per_rank[rank], exchange)
        return memory

    replicas = run_ranks(2, work)
    assert_same_memory(*replicas)
    expected = [torch.cat([b["targets"] for b in per_rank]) for per_rank in batches]
    for replica in replicas:
        assert all(torch.equal(a, b) for a, b in zip(replica.policy.offered, expected))
