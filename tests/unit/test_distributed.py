"""Replica helpers: shared component randomness, state fingerprints, the cross-rank check."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest
import torch
from rank_threads import run_ranks

from retentive.distributed import (
    all_gather_objects,
    check_identical,
    fingerprint,
    launched_as_global_zero,
    mix_seed,
    shared_rng,
)
from retentive.errors import ReplicaMismatchError


def test_shared_rng_seeds_the_block_and_restores_the_stream_outside_it():
    torch.manual_seed(0)
    expected_outside = torch.rand(3)
    torch.manual_seed(0)
    with shared_rng(mix_seed(7, 3), torch.device("cpu")):
        inside = torch.rand(2)
    assert torch.equal(torch.rand(3), expected_outside)  # the model's own stream is untouched
    torch.manual_seed(123)  # another rank, whose stream is elsewhere
    with shared_rng(mix_seed(7, 3), torch.device("cpu")):
        assert torch.equal(torch.rand(2), inside)
    with shared_rng(None, torch.device("cpu")):  # single process: no forking at all
        torch.rand(1)


def test_mixed_seeds_are_stable_and_distinct():
    assert mix_seed(1, 2) == mix_seed(1, 2)
    assert len({mix_seed(s, step) for s in range(5) for step in range(-2, 50)}) == 5 * 52
    assert 0 <= mix_seed(2**62, -1) < 2**63


def test_fingerprint_tells_apart_values_dtypes_and_structure():
    a = {"w": torch.arange(4.0), "n": 3, "list": [torch.zeros(2, dtype=torch.int64)]}
    assert fingerprint(a) == fingerprint({"list": [torch.zeros(2, dtype=torch.int64)], "n": 3, "w": torch.arange(4.0)})
    for changed in (
        {**a, "w": torch.tensor([0.0, 1.0, 2.0, 3.0000002])},
        {**a, "w": torch.arange(4.0, dtype=torch.float64)},
        {**a, "n": 4},
        {**a, "list": [torch.zeros(2, dtype=torch.int64)] * 2},
        {**a, "w": torch.arange(4.0).reshape(2, 2)},
    ):
        assert fingerprint(changed) != fingerprint(a)
    assert fingerprint(torch.tensor(1.5, dtype=torch.bfloat16)) != fingerprint(torch.tensor(1.5))


def test_fingerprint_hashes_a_tensor_in_place_without_a_copy_of_its_bytes():
    """A disk-backed memory of millions of rows is hashed when a DDP fit starts and ends: a copy
    of each key's bytes would put the whole memory in RAM, which the disk backend exists to avoid."""
    big = torch.arange(8 * 2**20, dtype=torch.float32)  # 32 MiB
    tracemalloc.start()
    try:
        digest = fingerprint({"inputs": big})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"hashing a 32 MiB tensor allocated {peak} bytes"
    expected = hashlib.sha256(repr("inputs").encode())
    expected.update(hashlib.sha256(big.numpy().tobytes()).digest() + str((torch.float32, (8 * 2**20,))).encode())
    assert digest == expected.digest()  # the same fingerprint as before: the same bytes hashed


def test_check_identical_names_the_parts_that_differ():
    def same(rank, exchange):
        check_identical({"model": {"w": torch.ones(3)}, "memory": [1, 2]}, exchange.gather, torch.device("cpu"))

    run_ranks(2, same)

    def drifted(rank, exchange):
        parts = {"model": {"w": torch.ones(3)}, "memory": {"seen": 10 + rank}, "component state": []}
        check_identical(parts, exchange.gather, torch.device("cpu"))

    with pytest.raises(ReplicaMismatchError, match=r"different memory \(compared by sha256\)"):
        run_ranks(3, drifted)


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),  # one process
        ({"RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "1"}, True),  # torchrun's RANK decides
        ({"RANK": "1", "LOCAL_RANK": "0", "GROUP_RANK": "1"}, False),  # torchrun, node 1's first process
        ({"NODE_RANK": "1"}, False),  # Lightning's launcher: node 1's local rank 0 is global rank 1
        ({"NODE_RANK": "0", "LOCAL_RANK": "1"}, False),  # a process Lightning started on node 0
        ({"NODE_RANK": "0"}, True),
        ({"GROUP_RANK": "1", "LOCAL_RANK": "0"}, False),
        ({"SLURM_PROCID": "3"}, False),  # srun
        ({"SLURM_PROCID": "0"}, True),
    ],
)
def test_the_writer_is_global_rank_0_as_the_launcher_says(monkeypatch, env, zero):
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launched_as_global_zero() is zero


def test_without_a_process_group_objects_stay_local():
    assert all_gather_objects({"a": 1}) == [{"a": 1}]


def test_a_process_lightning_ranks_non_zero_never_writes(monkeypatch):
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert launched_as_global_zero() is False
