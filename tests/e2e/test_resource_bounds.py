"""Bounded resources: what a state folder declares is checked before anything is allocated, and the
replay memory is allocated as it fills, with one clear error when it cannot grow.

Peak memory is measured in a fresh process (``ru_maxrss`` is a process's high-water mark)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import QUIET, sgd
from state_helpers import rehash

from retentive import ExperienceReplayModelUpdater
from retentive.errors import StateError
from retentive.memory import ReplayBuffer
from retentive.memory.budget import MemoryBudgetError, available_bytes
from retentive.models import MLP
from retentive.state import load_state, save_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
MIB = 1 << 20

# Run in a fresh process: prints the growth of peak RSS (MiB) over what the process held before
# the measured statement, and the error it raised, if any.
_MEASURE = """
import json, resource, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from helpers import QUIET, sgd
from retentive import ExperienceReplayModelUpdater
from retentive.models import MLP
from retentive.state import load_state
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
before = max(rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
error = None
try:
    {statement}
except Exception as exc:
    error = type(exc).__name__ + ": " + str(exc)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"grew_mib": (peak - before) / 2**20, "error": error}}))
"""


def _peak_growth(statement: str) -> dict:
    code = _MEASURE.format(tests=str(ROOT / "tests" / "support"), statement=statement)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "support")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _updater(memory_size: int, input_state: Path | None = None, output: Path | None = None, **kwargs):
    torch.manual_seed(0)
    return ExperienceReplayModelUpdater(
        MLP(**kwargs.pop("model", {})),
        torch.nn.CrossEntropyLoss(),
        sgd(0.03),
        memory_size=memory_size,
        batch_size=32,
        seed=0,
        input_state_folder=input_state,
        output_state_folder=output,
        **QUIET,
        **kwargs,
    )


def _state_with_memory(folder: Path, memory_size: int, storage: dict[str, torch.Tensor], size: int) -> Path:
    """A state folder of a fresh ER updater whose memory payload holds ``storage`` (``size`` rows)."""
    state = _updater(memory_size)._state()
    state.memory.update(
        size=size,
        seen=size,
        storage=storage,
        dtypes={key: str(value.dtype).removeprefix("torch.") for key, value in storage.items()},
    )
    return save_state(folder, state)


# ------------------------------------------------------------------------------ finding 7


def test_a_deflated_payload_is_refused_before_it_expands(tmp_path):
    """A 200 MB record of zeros deflated to ~0.2 MB: refused from the zip directory, never inflated."""
    folder = _state_with_memory(tmp_path / "s", 10, {}, 0)
    data = folder / "model.pt"
    original = zipfile.ZipFile(io.BytesIO(data.read_bytes()))
    bomb = tmp_path / "bomb.pt"
    zeros = bytes(MIB)
    with zipfile.ZipFile(bomb, "w") as out:
        for info in original.infolist():
            if info.filename.endswith("/data/0"):
                entry_info = zipfile.ZipInfo(info.filename)
                entry_info.compress_type = zipfile.ZIP_DEFLATED
                with out.open(entry_info, "w") as entry:  # streamed: never 200 MB in this process
                    for _ in range(200):
                        entry.write(zeros)
            else:
                out.writestr(info.filename, original.read(info.filename))
    assert bomb.stat().st_size < 2 * MIB
    os.replace(bomb, data)
    rehash(folder)  # an attacker with write access: the manifest vouches for the bomb
    with pytest.raises(StateError, match="model.pt.*compressed entry"):
        load_state(folder)
    measured = _peak_growth(f"load_state({str(folder)!r})")
    assert "compressed entry" in measured["error"]
    assert measured["grew_mib"] < 50, measured  # it was ~200 MB: inflated before torch refused it


def test_empty_rows_of_a_huge_declared_shape_cost_nothing(tmp_path):
    """Finding 7: a tiny memory.pt declaring per-sample shape 1x1000x10000 and no rows, for a
    memory_size of 47, added 1.88 GiB when the updater was built (47 preallocated rows)."""
    storage = {
        "inputs": torch.zeros(0, 1, 1000, 10000),
        "targets": torch.zeros(0, dtype=torch.int64),
        "task_ids": torch.zeros(0, dtype=torch.int64),
    }
    folder = _state_with_memory(tmp_path / "s", 47, storage, 0)
    assert (folder / "memory.pt").stat().st_size < 64 * 1024
    measured = _peak_growth(
        "u = ExperienceReplayModelUpdater(MLP(), torch.nn.CrossEntropyLoss(), sgd(0.03), memory_size=47, "
        f"input_state_folder={str(folder)!r}, **QUIET)"
    )
    assert measured["error"] is None, measured
    assert measured["grew_mib"] < 100, measured


def test_rows_declared_beyond_their_file_are_refused_before_they_are_copied(tmp_path):
    """Zero strides let 4 bytes of file declare 200 MB of rows; the restore would copy them."""
    storage = {
        "inputs": torch.zeros(1).expand(5, 1000, 10000),
        "targets": torch.zeros(5, dtype=torch.int64),
        "task_ids": torch.zeros(5, dtype=torch.int64),
    }
    folder = _state_with_memory(tmp_path / "s", 47, storage, 5)
    with pytest.raises(StateError, match=r"memory.pt.*declares a tensor of shape \(5, 1000, 10000\)"):
        load_state(folder)
    many = {f"logits{i}": torch.zeros(1).expand(5, 1000) for i in range(64)}  # each alone fits the file
    folder = _state_with_memory(tmp_path / "t", 47, {**many, "targets": torch.zeros(5, dtype=torch.int64)}, 5)
    with pytest.raises(StateError, match="memory.pt.*bytes of memory rows in a file of"):
        load_state(folder)


# ------------------------------------------------------------------------------ finding 8


def test_a_huge_memory_size_costs_only_the_rows_filled(split_small, tmp_path):
    """memory_size=10**7 of 28x28 inputs (31 GB preallocated before) trains and saves; the
    storage holds a power of two of rows at most twice the samples filled."""
    train, _ = split_small
    chunk = train[0].subset(torch.arange(200))
    updater = _updater(10**7, output=tmp_path / "s")
    updater.update(chunk, task_id=0)
    assert len(updater.memory) == 200 and 200 <= updater.memory.allocated <= 400
    again = _updater(10**7, input_state=tmp_path / "s")
    assert again.memory.allocated == 200 and torch.equal(
        again.memory.storage["inputs"], updater.memory.storage["inputs"][:200]
    )


def test_building_from_a_small_state_with_a_huge_memory_size_stays_small(tmp_path):
    """Finding 8: 4-feature inputs and memory_size=10**7 grew RSS by ~0.6 GiB for a 37 KB state."""
    storage = {
        "inputs": torch.randn(100, 4),
        "targets": torch.randint(0, 10, (100,)),
        "task_ids": torch.zeros(100, dtype=torch.int64),
    }
    state = _updater(10**7, model=dict(in_features=4, hidden=(8,)))._state()
    state.memory.update(
        size=100, seen=100, storage=storage, dtypes={"inputs": "float32", "targets": "int64", "task_ids": "int64"}
    )
    folder = save_state(tmp_path / "s", state)
    measured = _peak_growth(
        "u = ExperienceReplayModelUpdater(MLP(in_features=4, hidden=(8,)), torch.nn.CrossEntropyLoss(), sgd(0.03), "
        f"memory_size=10**7, input_state_folder={str(folder)!r}, **QUIET)"
    )
    assert measured["error"] is None, measured
    assert measured["grew_mib"] < 100, measured


def test_growth_beyond_the_device_budget_is_one_clear_error_and_changes_nothing():
    """Storage for a million 40 MB samples exceeds any machine this runs on: refused up front and
    at growth, naming the bytes needed and available, the memory as it was."""
    memory = ReplayBuffer(10**6)
    memory.add(
        {
            "inputs": torch.zeros(1, 1000, 10000),
            "targets": torch.zeros(1, dtype=torch.int64),
            "task_ids": torch.zeros(1, dtype=torch.int64),
        }
    )
    before = memory.state_dict()
    available = available_bytes("cpu")
    # per sample: 40 MB of inputs, targets and task ids, and the three int64 identity keys
    assert available is not None and available < 10**6 * 40_000_040
    for attempt in (lambda: memory.check_room(10**6), lambda: memory.reserve(10**6)):
        with pytest.raises(
            MemoryBudgetError, match=r"needs 40,000,040,000,000 bytes on cpu .* but [\d,]+ bytes are available"
        ):
            attempt()
    assert isinstance(MemoryBudgetError("x"), MemoryError)
    after = memory.state_dict()
    assert memory.allocated == 1 and after["size"] == before["size"] == 1
    assert all(torch.equal(after["storage"][k], before["storage"][k]) for k in before["storage"])


def test_growth_keeps_samples_and_draws_identical_to_a_restored_memory():
    """A memory grown step by step and one restored from its state_dict (allocated exactly) hold the
    same rows, draw the same samples and save the same state afterwards."""
    grown = ReplayBuffer(300, seed=3)
    g = torch.Generator().manual_seed(0)
    sizes = []
    for _ in range(7):
        grown.add(
            {
                "inputs": torch.randn(32, 5, generator=g),
                "targets": torch.randint(0, 10, (32,), generator=g),
                "task_ids": torch.zeros(32, dtype=torch.int64),
            }
        )
        sizes.append(grown.allocated)
    assert sizes == [32, 64, 128, 128, 256, 256, 256]  # doubling, capped at the capacity
    restored = ReplayBuffer(300, seed=99)
    restored.load_state_dict(grown.state_dict())
    assert restored.allocated == grown.size == 224
    for _ in range(4):
        batch = {
            "inputs": torch.randn(32, 5, generator=g),
            "targets": torch.randint(0, 10, (32,), generator=g),
            "task_ids": torch.zeros(32, dtype=torch.int64),
        }
        assert torch.equal(grown.add(batch), restored.add(batch))
        a, b = grown.sample(20), restored.sample(20)
        assert torch.equal(a.indices, b.indices) and torch.equal(a.inputs, b.inputs)
    sa, sb = grown.state_dict(), restored.state_dict()
    assert sa["size"] == sb["size"] == 300 and grown.allocated == restored.allocated == 300
    assert all(torch.equal(sa["storage"][k], sb["storage"][k]) for k in sa["storage"])
    assert all(torch.equal(sa["generators"][k], sb["generators"][k]) for k in sa["generators"])


def test_an_update_the_memory_could_not_hold_is_refused_before_training(tmp_path, monkeypatch):
    """On a device with little memory left, an update whose chunk the memory would have to store is
    refused before the first step, naming the bytes: nothing trained, nothing written."""
    import retentive.memory.budget as budget
    from retentive.data import TensorChunk

    g = torch.Generator().manual_seed(0)
    chunk = TensorChunk(torch.randn(64, 4, generator=g), torch.randint(0, 10, (64,), generator=g))
    first = ExperienceReplayModelUpdater(
        MLP(in_features=4, hidden=(8,)),
        torch.nn.CrossEntropyLoss(),
        sgd(0.03),
        memory_size=10**6,
        output_state_folder=tmp_path / "s1",
        **QUIET,
    )
    first.update(chunk, task_id=0)
    second = ExperienceReplayModelUpdater(
        MLP(in_features=4, hidden=(8,)),
        torch.nn.CrossEntropyLoss(),
        sgd(0.03),
        memory_size=10**6,
        input_state_folder=tmp_path / "s1",
        output_state_folder=tmp_path / "s2",
        **QUIET,
    )
    weights = {k: v.clone() for k, v in second.model.state_dict().items()}
    monkeypatch.setattr(budget, "available_bytes", lambda device: 1000)  # 1 KB left on the device
    fits: list[int] = []
    monkeypatch.setattr(second, "run_fits", lambda *args, **kwargs: fits.append(1))
    with pytest.raises(MemoryBudgetError, match=r"needs [\d,]+ bytes on cpu .* but 1,000 bytes are available"):
        second.update(chunk, task_id=1)
    assert fits == [], "refused before training"
    assert second.updates_done == 1 and len(second.memory) == 64
    assert all(torch.equal(v, second.model.state_dict()[k]) for k, v in weights.items())
    assert not (tmp_path / "s2").exists()
