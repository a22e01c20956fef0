"""Scenarios over any dataset of (x, y): class/task-incremental, IID, data-incremental."""

from __future__ import annotations

import pytest
import torch

from retentive.data import (
    TensorChunk,
    class_incremental,
    concatenate,
    data_incremental,
    group_classes,
    iid_chunks,
    rank_bins,
    subsample,
    task_incremental,
)


@pytest.fixture()
def toy() -> TensorChunk:
    """60 samples of 6 classes; input i holds the value i, so every sample is traceable."""
    targets = torch.arange(60) % 6
    return TensorChunk(torch.arange(60, dtype=torch.float32).unsqueeze(1), targets)


def ids(chunk: TensorChunk) -> set[int]:
    return set(chunk.inputs.squeeze(1).long().tolist())


def test_class_incremental_with_given_groups_holds_exactly_their_samples(toy):
    chunks = class_incremental(toy, [[4, 1], [0]])
    assert [sorted(torch.unique(c.targets).tolist()) for c in chunks] == [[1, 4], [0]]
    assert len(chunks[0]) == 20 and len(chunks[1]) == 10 and chunks[0].task_ids is None


def test_class_incremental_in_n_chunks_splits_the_sorted_classes(toy):
    chunks = class_incremental(toy, num_chunks=4)
    assert [torch.unique(c.targets).tolist() for c in chunks] == [[0, 1], [2, 3], [4], [5]]


def test_a_seed_shuffles_the_grouping_reproducibly(toy):
    a = group_classes(range(6), 3, seed=1)
    assert a == group_classes(range(6), 3, seed=1)
    assert sorted(c for g in a for c in g) == list(range(6))
    assert any(group_classes(range(6), 3, seed=s) != a for s in range(2, 6))
    assert group_classes(range(6), 3) == [[0, 1], [2, 3], [4, 5]]


def test_task_incremental_chunks_carry_their_group_index(toy):
    chunks = task_incremental(toy, [[0, 1], [2, 3], [4, 5]])
    for t, chunk in enumerate(chunks):
        assert torch.equal(chunk.task_ids, torch.full((20,), t))
        assert len(chunk[0]) == 3


def test_bad_class_groups_are_refused(toy):
    with pytest.raises(ValueError, match="more than one"):
        class_incremental(toy, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="no samples"):
        class_incremental(toy, [[0], [9]])
    with pytest.raises(ValueError, match="either"):
        class_incremental(toy, [[0]], num_chunks=2)
    with pytest.raises(ValueError, match="7 non-empty"):
        class_incremental(toy, num_chunks=7)


def test_iid_chunks_partition_the_data_and_depend_only_on_the_seed(toy):
    chunks = iid_chunks(toy, 4, seed=3)
    assert [len(c) for c in chunks] == [15, 15, 15, 15]
    seen = [ids(c) for c in chunks]
    assert set().union(*seen) == set(range(60)) and sum(len(s) for s in seen) == 60
    assert [ids(c) for c in iid_chunks(toy, 4, seed=3)] == seen
    assert [ids(c) for c in iid_chunks(toy, 4, seed=4)] != seen
    # same distribution: every chunk has several classes
    assert all(len(torch.unique(c.targets)) > 3 for c in chunks)


def test_data_incremental_cuts_by_key_in_the_given_order(toy):
    keys = torch.arange(60) // 20  # three "collection periods"
    chunks = data_incremental(toy, keys, order=[2, 0, 1], with_task_ids=True)
    assert [ids(c) for c in chunks] == [set(range(40, 60)), set(range(20)), set(range(20, 40))]
    assert chunks[0].task_ids.unique().tolist() == [0] and chunks[2].task_ids.unique().tolist() == [2]
    with pytest.raises(ValueError, match="exactly once"):
        data_incremental(toy, keys, order=[0, 1])
    with pytest.raises(ValueError, match="integers"):
        data_incremental(toy, keys.float())


def test_rank_bins_orders_by_score_into_equal_bins():
    score = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    assert rank_bins(score, 3).tolist() == [2, 0, 1, 1, 2, 0]


def test_subsample_is_seeded_and_keeps_order(toy):
    a, b = subsample(toy, 10, seed=1), subsample(toy, 10, seed=1)
    assert torch.equal(a.inputs, b.inputs) and len(a) == 10
    values = a.inputs.squeeze(1)
    assert torch.equal(values, values.sort().values)
    assert subsample(toy, None) is toy and subsample(toy, 1000) is toy


def test_concatenate_keeps_task_ids_only_when_all_have_them(toy):
    chunks = task_incremental(toy, [[0], [1]])
    joined = concatenate(chunks)
    assert len(joined) == 20 and joined.task_ids.tolist() == [0] * 10 + [1] * 10
    assert concatenate([chunks[0], toy]).task_ids is None


def test_split_mnist_classes_on_real_data(mnist_test):
    chunks = class_incremental(mnist_test, num_chunks=5)
    assert [torch.unique(c.targets).tolist() for c in chunks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert sum(len(c) for c in chunks) == len(mnist_test)
