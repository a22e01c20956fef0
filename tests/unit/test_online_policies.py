"""The online class-aware policies: class-balanced reservoir (CBRS) and the per-class ring buffer."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from retentive.memory import ClassBalancedReservoirPolicy, ReplayBuffer, RingBufferPolicy, policy_from_name


def _offer(buffer: ReplayBuffer, labels: list[int]) -> torch.Tensor:
    """Offer ``labels``; each input is its arrival position, so rows can be traced to the stream."""
    targets = torch.tensor(labels, dtype=torch.int64)
    inputs = torch.arange(buffer.seen, buffer.seen + len(labels), dtype=torch.float64).unsqueeze(1)
    return buffer.add({"inputs": inputs, "targets": targets, "task_ids": torch.zeros_like(targets)})


def _stream(chunks: list[list[tuple[int, int]]], shuffle_seed: int) -> list[list[int]]:
    """Chunks of ``(class, count)`` pairs, each chunk's labels shuffled, as lists of labels."""
    g = torch.Generator().manual_seed(shuffle_seed)
    out = []
    for chunk in chunks:
        labels = [c for c, k in chunk for _ in range(k)]
        out.append([labels[i] for i in torch.randperm(len(labels), generator=g).tolist()])
    return out


chunk_strategy = st.lists(
    st.lists(st.tuples(st.integers(0, 7), st.integers(1, 60)), min_size=1, max_size=3), min_size=1, max_size=5
)


@pytest.mark.parametrize("policy_class", [ClassBalancedReservoirPolicy, RingBufferPolicy])
@settings(max_examples=40, deadline=None)
@given(
    chunks=chunk_strategy,
    capacity=st.integers(8, 60),
    batch=st.integers(1, 40),
    seed=st.integers(0, 3),
)
def test_class_balance_holds_after_any_sequence_of_chunks(policy_class, chunks, capacity, batch, seed):
    buffer = ReplayBuffer(capacity, policy=policy_class(), seed=seed)
    stream: list[int] = []
    for labels in _stream(chunks, seed):
        for start in range(0, len(labels), batch):
            _offer(buffer, labels[start : start + batch])
            stream += labels[start : start + batch]
            n = len(buffer)
            assert n == min(capacity, len(stream))
            rows = buffer.storage["inputs"][:n, 0].long()
            targets = buffer.storage["targets"][:n]
            assert rows.unique().numel() == n  # no sample twice
            assert torch.equal(torch.tensor(stream)[rows], targets)  # every row is the sample offered
            if n < capacity:
                continue
            seen = torch.bincount(torch.tensor(stream), minlength=8)
            held = torch.bincount(targets, minlength=8)
            classes = int((seen > 0).sum())
            # as balanced as the stream allows: each class keeps all it offered or its fair share
            assert bool((held >= torch.minimum(seen, torch.full_like(seen, capacity // classes))).all()), (held, seen)
            # and no class keeps more than one sample beyond every other unless they lack samples
            largest = int(held.max())
            assert bool(((held == seen) | (held >= largest - 1)).all()), (held, seen)


@settings(max_examples=30, deadline=None)
@given(chunks=chunk_strategy, capacity=st.integers(8, 40), batch=st.integers(1, 25))
def test_ring_buffer_keeps_each_class_newest_samples(chunks, capacity, batch):
    buffer = ReplayBuffer(capacity, policy=RingBufferPolicy())
    stream: list[int] = []
    for labels in _stream(chunks, 0):
        for start in range(0, len(labels), batch):
            _offer(buffer, labels[start : start + batch])
            stream += labels[start : start + batch]
    rows = buffer.storage["inputs"][: len(buffer), 0].long()
    targets = buffer.storage["targets"][: len(buffer)]
    for c in targets.unique().tolist():
        arrivals = [i for i, label in enumerate(stream) if label == c]
        held = sorted(rows[targets == c].tolist())
        assert held == arrivals[len(arrivals) - len(held) :]  # a FIFO: the newest of the class
    # the FIFO order saved in the policy state is each slot's arrival position
    assert torch.equal(buffer.policy.arrival[: len(buffer)], rows)


def test_ring_buffer_by_hand():
    buffer = ReplayBuffer(4, policy=RingBufferPolicy())
    _offer(buffer, [0, 0, 0, 0])  # fills the memory
    _offer(buffer, [0])  # class 0 is the largest: its own oldest (arrival 0) goes
    assert sorted(buffer.storage["inputs"][:, 0].long().tolist()) == [1, 2, 3, 4]
    _offer(buffer, [1, 1])  # class 1 holds 2+ fewer than class 0: the oldest of class 0 go (1, 2)
    assert sorted(buffer.storage["inputs"][:, 0].long().tolist()) == [3, 4, 5, 6]
    _offer(buffer, [1])  # 2 and 2: its own oldest (arrival 5) goes
    assert sorted(buffer.storage["inputs"][:, 0].long().tolist()) == [3, 4, 6, 7]


def test_cbrs_by_hand():
    # Full memory [0, 0, 0, 1]. A sample of class 1 (not full) evicts a class-0 sample; class 0
    # is marked full. Then class 0 samples enter only with probability m_0 / n_0.
    policy = ClassBalancedReservoirPolicy()
    g = torch.Generator().manual_seed(0)
    policy.seen_per_class = torch.tensor([3, 1])
    source, slots = policy.select(1, 4, 4, 4, torch.tensor([1]), torch.tensor([0, 0, 0, 1]), g)
    assert source.tolist() == [0] and int(slots[0]) in (0, 1, 2)
    assert policy.full.tolist() == [True, False] and policy.seen_per_class.tolist() == [3, 2]


@pytest.mark.slow
def test_cbrs_is_a_uniform_reservoir_within_a_class():
    # One class, capacity 10, 100 samples: each position is kept with probability 10 / 100.
    hits = torch.zeros(100)
    runs = 1500
    for seed in range(runs):
        buffer = ReplayBuffer(10, policy=ClassBalancedReservoirPolicy(), seed=seed)
        for _ in range(5):
            _offer(buffer, [0] * 20)
        hits[buffer.storage["inputs"][:, 0].long()] += 1
    expected, sd = runs * 0.1, (runs * 0.1 * 0.9) ** 0.5
    assert float((hits - expected).abs().max()) < 5 * sd
    # and the late samples are not favoured: the first and the last half are kept alike
    assert abs(float(hits[:50].sum() - hits[50:].sum())) < 5 * (runs * 10 * 0.25) ** 0.5


def test_cbrs_keeps_a_rare_class_whole():
    # 2% of the stream is class 1; reservoir would keep ~1 of 50 slots, CBRS keeps all of them.
    buffer = ReplayBuffer(50, policy=ClassBalancedReservoirPolicy(), seed=0)
    labels = [1 if i % 50 == 0 else 0 for i in range(1000)]
    for start in range(0, 1000, 32):
        _offer(buffer, labels[start : start + 32])
    assert buffer.class_counts(2).tolist() == [30, 20]


def test_policies_are_registered_by_config_name():
    for name, cls in [("class_balanced_reservoir", ClassBalancedReservoirPolicy), ("ring_buffer", RingBufferPolicy)]:
        assert isinstance(policy_from_name(name), cls) and cls.name == name
    for name in ("herding", "k_center", "gradient_diversity", "forgetting"):
        assert policy_from_name(name).name == name
    with pytest.raises(ValueError, match="unknown memory policy 'fifo'"):
        policy_from_name("fifo")


@pytest.mark.parametrize("policy_class", [ClassBalancedReservoirPolicy, RingBufferPolicy])
def test_memory_smaller_than_the_classes_is_refused(policy_class):
    with pytest.raises(ValueError, match="memory_size=5 is smaller than the 10 classes"):
        ReplayBuffer(5, policy=policy_class(num_classes=10))
    buffer = ReplayBuffer(3, policy=policy_class())  # classes unknown: refused when the 4th arrives
    _offer(buffer, [0, 1, 2])
    with pytest.raises(ValueError, match="memory_size=3 is smaller than the 4 classes"):
        _offer(buffer, [3])
    with pytest.raises(ValueError, match="needs the targets"):
        policy_class().select(1, 0, 0, 4, None, None, torch.Generator())


@pytest.mark.parametrize("policy_class", [ClassBalancedReservoirPolicy, RingBufferPolicy])
def test_state_round_trips_and_continues_identically(policy_class):
    a = ReplayBuffer(20, policy=policy_class(), seed=3)
    labels = [i % 3 for i in range(70)] + [3] * 30
    _offer(a, labels[:50])
    state = a.state_dict()
    assert "policy_state" in state and all(torch.is_tensor(v) for v in state["policy_state"].values())
    b = ReplayBuffer(20, policy=policy_class(), seed=99)
    b.load_state_dict(state)
    for buffer in (a, b):
        for start in range(50, 100, 7):
            _offer(buffer, labels[start : start + 7])
    assert torch.equal(a.storage["inputs"], b.storage["inputs"])
    for key, value in a.policy.state_dict().items():
        assert torch.equal(value, b.policy.state_dict()[key])


def test_replicas_agree_through_the_exchange():
    from rank_threads import run_ranks

    from retentive.memory.exchange import distributed_add

    def work(rank, exchange):
        buffer = ReplayBuffer(16, policy=ClassBalancedReservoirPolicy(), seed=5)
        g = torch.Generator().manual_seed(100 + rank)  # every rank its own data
        for step in range(12):
            y = torch.randint(0, 2 + step // 3, (8,), generator=g)
            x = torch.rand(8, 4, generator=g)
            distributed_add(buffer, {"inputs": x, "targets": y, "task_ids": torch.zeros_like(y)}, exchange)
        return buffer.state_dict()

    states = run_ranks(2, work)
    assert torch.equal(states[0]["storage"]["inputs"], states[1]["storage"]["inputs"])
    for key in states[0]["policy_state"]:
        assert torch.equal(states[0]["policy_state"][key], states[1]["policy_state"][key])
