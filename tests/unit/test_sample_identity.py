"""Sample identity in the memory: ids kept through add, replace, save/load and deletion; deletion
compacts the storage; ids outside an update, of a provided dataset, and of legacy memories."""

from __future__ import annotations

import pytest
import torch

from retentive.data import TensorChunk
from retentive.errors import SampleNotFoundError
from retentive.governance.selection import parse_ids, parse_predicate
from retentive.memory import ReplayBuffer, RingBufferPolicy, UnboundedBuffer
from retentive.memory.generative import GenerativeMemory, VariationalAutoencoder
from retentive.memory.identity import ID_KEY, IDENTITY_KEYS, ROW_KEY, SOURCE_KEY, derive_ids, provided_ids


def batch(n: int, start: int = 0) -> dict[str, torch.Tensor]:
    return {
        "inputs": torch.arange(start, start + n, dtype=torch.float32).unsqueeze(1).repeat(1, 3),
        "targets": torch.arange(start, start + n) % 4,
        "task_ids": torch.zeros(n, dtype=torch.int64),
    }


def test_derived_ids_are_stable_distinct_and_non_negative():
    rows = torch.arange(10_000)
    ids = derive_ids("abc", rows)
    assert ids.dtype == torch.int64 and bool((ids >= 0).all()) and ids.unique().numel() == 10_000
    assert torch.equal(ids, derive_ids("abc", rows))
    assert not bool(torch.isin(derive_ids("abd", rows), ids).any())


def test_rows_offered_in_an_update_get_the_chunks_ids_and_rows():
    memory = ReplayBuffer(100)
    memory.begin_source("f" * 64, update=3)
    memory.add({**batch(5), ROW_KEY: torch.tensor([7, 1, 4, 0, 9])})
    assert set(IDENTITY_KEYS) <= set(memory.keys)
    assert torch.equal(memory.sample_ids(), derive_ids("f" * 64, torch.tensor([7, 1, 4, 0, 9])))
    assert memory.source_entries() == [{"fingerprint": "f" * 64, "update": 3, "provided_ids": False}]
    assert memory.decoded(SOURCE_KEY).tolist() == [0] * 5


def test_provided_ids_are_kept_and_checked():
    chunk = TensorChunk(torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64), sample_ids=torch.tensor([10, 11, 12, 13]))
    ids = provided_ids(chunk)
    assert ids is not None and ids.tolist() == [10, 11, 12, 13]
    memory = ReplayBuffer(10)
    memory.begin_source("chunk", 0, ids)
    memory.add(batch(4))  # an in-order pass: rows 0..3 of the chunk
    assert memory.sample_ids().tolist() == [10, 11, 12, 13]
    with pytest.raises(ValueError, match="sample_ids"):
        TensorChunk(torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64), sample_ids=torch.tensor([1, 2]))


def test_delete_compacts_the_storage_and_keeps_the_rest_in_order():
    memory = ReplayBuffer(20)
    memory.add(batch(10))
    ids = memory.sample_ids().clone()
    inputs = memory.decoded("inputs").clone()
    assert memory.delete([int(ids[2]), int(ids[7])]) == 2
    keep = torch.ones(10, dtype=torch.bool)
    keep[[2, 7]] = False
    assert len(memory) == 8 and memory.allocated == 8
    assert torch.equal(memory.sample_ids(), ids[keep]) and torch.equal(memory.decoded("inputs"), inputs[keep])
    memory.add(batch(3, start=10))  # inserting after a deletion fills the freed slots first
    assert len(memory) == 11


def test_deleting_an_id_not_held_names_it_and_changes_nothing():
    memory = ReplayBuffer(20)
    memory.add(batch(6))
    before = {k: v.clone() for k, v in memory.storage.items()}
    held = int(memory.sample_ids()[0])
    with pytest.raises(SampleNotFoundError, match="12345") as error:
        memory.delete([held, 12345])
    assert error.value.missing == (12345,)
    assert all(torch.equal(before[k], memory.storage[k]) for k in before) and len(memory) == 6


def test_ids_survive_save_load_and_replace():
    memory = ReplayBuffer(8)
    memory.begin_source("src", 0)
    memory.add(batch(8))
    copy = ReplayBuffer(8)
    copy.load_state_dict(memory.state_dict())
    assert torch.equal(copy.sample_ids(), memory.sample_ids()) and copy.source_entries() == memory.source_entries()
    kept = memory.rows(0, 8).data
    memory.replace({k: v[[5, 1]] for k, v in kept.items()})  # an update-end rewrite keeps ids with rows
    assert memory.sample_ids().tolist() == copy.sample_ids()[[5, 1]].tolist()


def test_a_memory_saved_without_ids_gets_the_same_ids_on_every_load():
    memory = ReplayBuffer(8)
    memory.add(batch(6))
    state = memory.state_dict()
    state["storage"] = {k: v for k, v in state["storage"].items() if k not in IDENTITY_KEYS}
    state["dtypes"] = {k: v for k, v in state["dtypes"].items() if k not in IDENTITY_KEYS}
    del state["sources"]
    first, second = ReplayBuffer(8), ReplayBuffer(8)
    first.load_state_dict(state)
    second.load_state_dict(state)
    assert torch.equal(first.sample_ids(), second.sample_ids()) and first.sample_ids().unique().numel() == 6
    assert first.source_entries()[0]["fingerprint"].startswith("legacy-")
    first.add(batch(2, start=6))  # and it takes new samples after that
    assert len(first) == 8


def test_the_ring_buffer_forgets_the_arrival_of_deleted_rows():
    memory = ReplayBuffer(6, policy=RingBufferPolicy())
    memory.add(batch(6))
    memory.delete([int(memory.sample_ids()[0])])
    assert memory.policy.arrival.tolist()[:5] == [1, 2, 3, 4, 5] and memory.policy.arrival.numel() == 6
    memory.add(batch(2, start=6))  # the freed slot is filled, then the oldest of a class goes
    assert len(memory) == 6


def test_an_unbounded_memory_deletes_too():
    memory = UnboundedBuffer()
    memory.add(batch(5))
    memory.delete(memory.sample_ids()[:2])
    assert len(memory) == 3


def test_a_generative_memory_has_no_ids_to_delete():
    solver = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    memory = GenerativeMemory(VariationalAutoencoder(input_shape=(1, 4, 4), latent_dim=2), solver)
    assert memory.sample_ids().numel() == 0 and memory.delete([]) == 0
    with pytest.raises(SampleNotFoundError, match="stores no samples"):
        memory.delete([1])


@pytest.mark.parametrize("given", [["-1"], ["abc"], [str(1 << 63)], ["1.5"], [""]])
def test_crafted_id_arguments_are_refused(given):
    with pytest.raises(ValueError):
        parse_ids(given)


def test_ids_and_predicates_parse():
    assert parse_ids(["1,2", "3", 4]) == [1, 2, 3, 4]
    assert parse_predicate("label=3") == ("label", 3)
    for bad in ("label", "colour=3", "label=x"):
        with pytest.raises(ValueError):
            parse_predicate(bad)
    assert ID_KEY == "sample_ids"
