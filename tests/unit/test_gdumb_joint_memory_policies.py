"""GDumb's greedy class-balanced policy by hand, and the unbounded buffer Joint keeps."""

from __future__ import annotations

import pytest
import torch

from retentive.memory import GreedyClassBalancedPolicy, ReplayBuffer, UnboundedBuffer, policy_from_name


def _offer(buffer: ReplayBuffer, labels: list[int]) -> torch.Tensor:
    targets = torch.tensor(labels)
    inputs = torch.arange(buffer.seen, buffer.seen + len(labels), dtype=torch.float32).unsqueeze(1)
    return buffer.add({"inputs": inputs, "targets": targets, "task_ids": torch.zeros_like(targets)})


def test_fills_free_slots_in_order():
    policy = GreedyClassBalancedPolicy()
    g = torch.Generator().manual_seed(0)
    source, slots = policy.select(5, 3, 3, 10, torch.tensor([4, 4, 4, 4, 4]), torch.tensor([1, 1, 2]), g)
    assert source.tolist() == [0, 1, 2, 3, 4] and slots.tolist() == [3, 4, 5, 6, 7]


def test_admission_and_eviction_by_hand():
    # Full memory [0, 0, 1, 1]; incoming 0, 2, 2, 2.
    #  0: classes {0, 1}, quota 4 // 2 = 2, class 0 holds 2 -> rejected
    #  2: a new class, quota 4 // 3 = 1, holds 0 -> kept, replacing a sample of class 0 or 1
    #  2, 2: class 2 holds 1 = quota -> rejected
    policy = GreedyClassBalancedPolicy()
    g = torch.Generator().manual_seed(0)
    source, slots = policy.select(4, 4, 4, 4, torch.tensor([0, 2, 2, 2]), torch.tensor([0, 0, 1, 1]), g)
    assert source.tolist() == [1] and slots.numel() == 1 and 0 <= int(slots[0]) < 4


def test_a_largest_class_is_the_one_evicted():
    policy = GreedyClassBalancedPolicy()
    g = torch.Generator().manual_seed(0)
    stored = torch.tensor([0, 0, 0, 1, 1, 2])  # class 0 is the unique largest
    for _ in range(20):
        source, slots = policy.select(1, 6, 6, 6, torch.tensor([3]), stored, g)
        assert source.tolist() == [0] and int(slots[0]) in (0, 1, 2)


@pytest.mark.parametrize("interleaved", [False, True])
def test_memory_ends_class_balanced(interleaved):
    buffer = ReplayBuffer(100, policy=GreedyClassBalancedPolicy(), seed=1)
    labels = [c for c in range(5) for _ in range(200)]
    if interleaved:
        labels = [labels[i] for i in torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    for start in range(0, len(labels), 37):
        _offer(buffer, labels[start : start + 37])
    counts = buffer.class_counts(5)
    assert counts.tolist() == [20, 20, 20, 20, 20]
    stored = buffer.storage["inputs"][:, 0].long()
    assert torch.equal(torch.tensor(labels)[stored], buffer.storage["targets"])  # rows stay consistent
    assert buffer.seen == 1000


def test_two_then_four_classes():
    buffer = ReplayBuffer(50, policy=policy_from_name("greedy_class_balanced"), seed=0)
    _offer(buffer, [0, 1] * 100)
    assert buffer.class_counts(2).tolist() == [25, 25]
    _offer(buffer, [2, 3] * 100)
    assert sorted(buffer.class_counts(4).tolist()) == [12, 12, 13, 13]


def test_needs_targets():
    with pytest.raises(ValueError, match="targets"):
        GreedyClassBalancedPolicy().select(2, 0, 0, 4, None, None, torch.Generator())


def test_unbounded_buffer_keeps_everything_in_order_and_round_trips():
    buffer = UnboundedBuffer(seed=0)
    for size in (3, 7, 40):
        _offer(buffer, [1] * size)
    assert len(buffer) == 50 and buffer.seen == 50 and buffer.capacity >= 50
    assert torch.equal(buffer.storage["inputs"][:50, 0], torch.arange(50, dtype=torch.float32))
    other = UnboundedBuffer(seed=3)
    other.load_state_dict(buffer.state_dict())
    assert len(other) == 50 and torch.equal(other.storage["inputs"][:50], buffer.storage["inputs"][:50])
    _offer(other, [2] * 5)
    assert len(other) == 55 and torch.equal(other.storage["inputs"][50:55, 0], torch.arange(50, 55.0))
