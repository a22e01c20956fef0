"""The memory backends (grown, tensor, disk): one behaviour through the protocol, bit for bit; a
state saved with any loads with any other; the disk's files private, its resident pages bounded,
its budget the disk's; a refusal is a MemoryBudgetError, never an allocator's error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from retentive import mapped
from retentive.errors import MemoryBudgetError
from retentive.memory import ClassBalancedReservoirPolicy, ReplayBuffer, ReplayMemory, UnboundedBuffer
from retentive.memory import backends as backends_module
from retentive.memory import budget as budget_module
from retentive.memory.backends import BACKENDS

OTHERS = [b for b in BACKENDS if b != "grown"]


def _batch(start: int, n: int, width: int = 3) -> dict[str, torch.Tensor]:
    values = torch.arange(start, start + n, dtype=torch.float32).unsqueeze(1).repeat(1, width)
    return {
        "inputs": (values % 256) / 255,
        "targets": torch.arange(start, start + n) % 4,
        "task_ids": torch.zeros(n, dtype=torch.int64),
        "logits": values[:, :2] * 0.5,
    }


def _equal(a: object, b: object) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _exercise(memory: ReplayBuffer) -> list[object]:
    """Every protocol operation, recorded: add, sample (also a rank's share), gather, rows,
    decoded, refresh, class counts, replace and the state."""
    seen: list[object] = []
    for step in range(12):
        seen.append(memory.add(_batch(step * 16, 16)))
        drawn = memory.sample(8)
        assert drawn is not None
        seen += [drawn.indices, drawn.data]
        memory.refresh(drawn.indices, "logits", torch.full((len(drawn), 2), float(step)), 0.5)
    seen += [memory.sample(5, rank=1, world_size=2).data, memory.gather(torch.tensor([3, 1, 4])).data]  # type: ignore[union-attr]
    seen += [memory.rows(2, 9).data, memory.decoded("inputs"), memory.decoded("logits"), memory.class_counts(4)]
    seen.append(memory.state_dict())
    memory.replace(_batch(1000, 7), offered=3)
    seen += [len(memory), memory.seen, memory.decoded("targets"), memory.sample(7).data]  # type: ignore[union-attr]
    return seen


@pytest.mark.parametrize("backend", OTHERS)
def test_every_backend_behaves_bit_for_bit_as_the_grown_one(backend, tmp_path):
    grown = _exercise(ReplayBuffer(60, seed=3, input_dtype="uint8"))
    other_memory = ReplayBuffer(60, seed=3, input_dtype="uint8", backend=backend, directory=tmp_path)
    assert isinstance(other_memory, ReplayMemory)
    other = _exercise(other_memory)
    assert len(grown) == len(other)
    for i, (a, b) in enumerate(zip(grown, other)):
        assert _equal(a, b), f"operation {i} differs on {backend}"


@pytest.mark.parametrize("saved_with", BACKENDS)
@pytest.mark.parametrize("loaded_with", BACKENDS)
def test_a_state_saved_with_one_backend_loads_with_any_other(saved_with, loaded_with, tmp_path):
    source = ReplayBuffer(40, seed=1, backend=saved_with, directory=tmp_path)
    for step in range(6):
        source.add(_batch(step * 10, 10))
    state = source.state_dict()
    target = ReplayBuffer(40, seed=9, input_dtype="float16", backend=loaded_with, directory=tmp_path)
    target.load_state_dict(state)
    assert target.keys == source.keys and len(target) == len(source) and target.seen == source.seen
    for key in ("targets", "logits"):
        assert torch.equal(target.decoded(key), source.decoded(key))
    assert torch.equal(target.decoded("inputs"), source.decoded("inputs").half().float())  # re-encoded compactly
    assert _equal(target.sample(9).indices, source.sample(9).indices)  # type: ignore[union-attr]


def test_a_state_is_a_snapshot_that_later_writes_do_not_change(tmp_path):
    memory = ReplayBuffer(20, seed=0, backend="disk", directory=tmp_path)
    memory.add(_batch(0, 20))
    state = memory.state_dict()
    before = {k: v.clone() for k, v in state["storage"].items()}  # type: ignore[attr-defined]
    memory.replace(_batch(500, 20))
    assert _equal(state["storage"], before)


def test_the_tensor_backend_allocates_its_whole_capacity_at_layout_and_the_grown_one_as_it_fills():
    tensor, grown = ReplayBuffer(100, backend="tensor"), ReplayBuffer(100)
    tensor.add(_batch(0, 3))
    grown.add(_batch(0, 3))
    assert tensor.allocated == 100 and grown.allocated == 3
    restored = ReplayBuffer(100, backend="tensor")
    restored.load_state_dict(grown.state_dict())
    assert restored.allocated == 100 and len(restored) == 3


def test_the_disk_backend_grows_by_doubling_and_its_scratch_folder_stays_empty(tmp_path):
    memory = UnboundedBuffer(seed=2, backend="disk", directory=tmp_path / "scratch")
    sizes = []
    for step in range(5):
        memory.add(_batch(step * 7, 7))
        sizes.append(memory.allocated)
    assert sizes == [7, 14, 28, 28, 56]
    assert list((tmp_path / "scratch").iterdir()) == []  # unlinked at once: nothing to change or leave behind
    assert memory.storage_device == torch.device("cpu")
    assert torch.equal(memory.decoded("targets"), torch.arange(35) % 4)


def test_a_memory_too_large_for_the_device_is_refused_at_layout_by_the_tensor_backend(monkeypatch):
    monkeypatch.setattr(budget_module, "available_bytes", lambda device: 10_000)
    memory = ReplayBuffer(10_000_000, backend="tensor")
    with pytest.raises(MemoryBudgetError, match=r"10,000,000 of its memory_size=10,000,000 samples"):
        memory.add(_batch(0, 4))
    assert memory.keys == () and len(memory) == 0  # refused whole: nothing laid out
    grown = ReplayBuffer(10_000_000)  # the grown backend takes what fits and refuses only when it fills
    grown.add(_batch(0, 4))
    assert len(grown) == 4


def test_a_disk_backed_memory_refuses_rows_the_disk_cannot_hold(monkeypatch, tmp_path):
    memory = ReplayBuffer(10_000_000, backend="disk", directory=tmp_path)
    memory.add(_batch(0, 4))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(mapped.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    monkeypatch.setattr(backends_module.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(MemoryBudgetError, match=str(tmp_path)):
        memory.add(_batch(4, 400))
    with pytest.raises(MemoryBudgetError, match="memory_dir"):
        memory.check_room(10_000_000)
    assert len(memory) == 4 and torch.equal(memory.decoded("targets"), torch.arange(4) % 4)


def _resident_file_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident size from /proc")
def test_the_resident_size_of_a_disk_backed_memory_stays_bounded_while_its_files_are_far_larger(monkeypatch, tmp_path):
    monkeypatch.setattr(backends_module, "RESIDENT_WINDOW", 4 << 20)
    memory = ReplayBuffer(12_000, seed=0, policy=ClassBalancedReservoirPolicy(), backend="disk", directory=tmp_path)
    start = _resident_file_bytes()
    images = torch.randint(0, 256, (1000, 3, 32, 32), dtype=torch.uint8)
    for _ in range(12):  # 12,000 images of 3 KiB: 37 MB written
        memory.add({"inputs": images, "targets": torch.arange(1000) % 10, "task_ids": torch.zeros(1000).long()})
    for _ in range(50):  # and 50 x 256 drawn back (38 MB read)
        memory.sample(256)
    peak = _resident_file_bytes() - start
    assert memory.nbytes() >= 12_000 * 3072
    assert peak < 12 << 20, f"{peak:,} bytes of the memory's files resident"


def test_saved_rows_are_restored_block_by_block(monkeypatch, tmp_path):
    monkeypatch.setattr(backends_module, "COPY_BLOCK", 100)  # a block of a few rows
    source = ReplayBuffer(50, seed=4, input_dtype="uint8")
    source.add(_batch(0, 50, width=40))
    for backend in BACKENDS:
        restored = ReplayBuffer(50, backend=backend, directory=tmp_path)
        restored.load_state_dict(source.state_dict())
        assert _equal(restored.decoded("inputs"), source.decoded("inputs")), backend


def test_an_unknown_backend_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"memory_backend must be one of \['grown', 'tensor', 'disk'\]"):
        ReplayBuffer(4, backend="ssd")


def test_the_command_line_names_the_backends_the_memory_has():
    from retentive.cli.arguments import MEMORY_BACKENDS

    assert MEMORY_BACKENDS == BACKENDS


def test_the_state_writer_hands_back_mapped_pages_and_leaves_ordinary_memory_alone(tmp_path):
    file = mapped.MappedFile(tmp_path, (1024,), torch.uint8, 2048, "a test")
    file.tensor.fill_(7)
    ordinary = torch.full((1 << 21,), 5, dtype=torch.uint8)
    before = _resident_file_bytes()
    mapped.release_pages(memoryview(file.tensor.numpy()))
    mapped.release_pages(memoryview(ordinary.numpy()))
    assert _resident_file_bytes() < before - (1 << 20)  # 2 MiB of the file's pages left
    assert int(file.tensor.sum()) == 7 * 2048 * 1024 and int(ordinary.sum()) == 5 << 21  # no value changed
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("backend", OTHERS)
def test_deleting_samples_compacts_every_backend_as_the_grown_one_leaving_nothing_of_them(backend, tmp_path):
    memories = [ReplayBuffer(40, seed=5), ReplayBuffer(40, seed=5, backend=backend, directory=tmp_path)]
    for memory in memories:
        for step in range(5):
            memory.add(_batch(step * 10, 10))
    ids = memories[0].sample_ids()[[0, 7, 8, 30]]
    assert [memory.delete(ids) for memory in memories] == [4, 4]
    grown, other = memories
    assert len(other) == 36 and _equal(other.state_dict(), grown.state_dict())
    assert not bool(torch.isin(other.sample_ids(), ids).any())
    tail = {key: value[36:40] for key, value in other.storage.items()}  # the slots the compaction emptied
    assert all(int(value.count_nonzero()) == 0 for value in tail.values()), backend
    assert _equal(other.sample(9).data, grown.sample(9).data)  # type: ignore[union-attr]
    for memory in memories:
        memory.add(_batch(900, 10))
    assert _equal(other.state_dict(), grown.state_dict())
