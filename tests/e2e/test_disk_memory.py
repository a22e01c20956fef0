"""Updates with a disk-backed memory: the same states as the default backend, bit for bit; states
that move between backends; a resumed update identical to an uninterrupted one; a changed or
truncated memory file refused with one clear error, nothing lost."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from state_helpers import der, same_snapshot, snapshot

from retentive import StateError
from retentive.state import load_state
from retentive.state import streaming as state_streaming

pytestmark = pytest.mark.slow


def _state(folder: Path) -> dict:
    loaded = load_state(folder)
    return {"model": loaded.model, "memory": loaded.memory, "learner": loaded.learner}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def pipeline(split_small, tmp_path_factory):
    """Two updates with the grown (default) backend and two with the disk backend."""
    train, _ = split_small
    chunks = train[0].subset(torch.arange(200)), train[1].subset(torch.arange(200))
    root = tmp_path_factory.mktemp("disk")
    for backend in ("grown", "disk"):
        extra = {"memory_backend": backend, "memory_dir": root / "scratch"}
        der(root / backend / "s0", None, memory_size=120, **extra).update(chunks[0], task_id=0)
        der(root / backend / "s1", root / backend / "s0", memory_size=120, **extra).update(chunks[1], task_id=1)
    return root, chunks


def test_a_disk_backed_pipeline_writes_the_states_the_default_one_does(pipeline):
    root, _ = pipeline
    for update in (0, 1):
        assert same_snapshot(_state(root / "disk" / f"s{update}"), _state(root / "grown" / f"s{update}")), update
    assert list((root / "scratch").iterdir()) == []  # the scratch files were private and are gone


@pytest.mark.parametrize("backend", ["tensor", "disk"])
def test_a_state_written_with_the_disk_backend_continues_with_another(pipeline, backend, tmp_path):
    root, chunks = pipeline
    updater = der(tmp_path / "next", root / "disk" / "s0", memory_size=120, memory_backend=backend)
    updater.update(chunks[1], task_id=1)
    assert same_snapshot(_state(tmp_path / "next"), _state(root / "grown" / "s1"))


class Interrupt(Exception):
    pass


class CrashAtEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            raise Interrupt("crash in epoch 1")


def test_an_interrupted_disk_backed_update_resumes_bit_identical(pipeline, tmp_path):
    root, chunks = pipeline
    settings = dict(memory_size=120, max_epochs=3, memory_backend="disk", memory_dir=tmp_path / "scratch")
    der(tmp_path / "clean", root / "disk" / "s0", **{**settings, "memory_backend": "grown"}).update(
        chunks[1], task_id=1
    )
    crashed = der(tmp_path / "s1", root / "disk" / "s0", resume=True, callbacks=[CrashAtEpoch()], **settings)
    before = snapshot(crashed)
    with pytest.raises(Interrupt):
        crashed.update(chunks[1], task_id=1)
    assert same_snapshot(snapshot(crashed), before)  # put back as it was
    der(tmp_path / "s1", root / "disk" / "s0", resume=True, **settings).update(chunks[1], task_id=1)
    assert same_snapshot(_state(tmp_path / "s1"), _state(tmp_path / "clean"))


@pytest.mark.parametrize("damage", ["changed", "truncated"])
@pytest.mark.parametrize("mapped", [False, True], ids=["read", "memory-mapped"])
def test_a_changed_or_truncated_memory_file_is_one_clear_error_and_nothing_is_lost(
    pipeline, damage, mapped, tmp_path, monkeypatch
):
    root, chunks = pipeline
    if mapped:  # the path a large memory takes: hashed from its descriptor, loaded memory-mapped
        monkeypatch.setattr(state_streaming, "MAPPED_PAYLOAD", 0)
    folder = tmp_path / "damaged"
    shutil.copytree(root / "disk" / "s1", folder)
    memory_file = folder / "memory.pt"
    data = bytearray(memory_file.read_bytes())
    if damage == "changed":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 3 :]
    memory_file.write_bytes(bytes(data))
    damaged = _digests(folder)
    with pytest.raises(StateError, match=r"memory\.pt' does not match its manifest checksum.*modified or truncated"):
        der(tmp_path / "out", folder, memory_size=120, memory_backend="disk")
    assert _digests(folder) == damaged and not (tmp_path / "out").exists()
    # the intact version loads on the same path and continues
    intact = der(tmp_path / "out", root / "disk" / "s1", memory_size=120, memory_backend="disk")
    assert same_snapshot(snapshot(intact)["memory"], load_state(root / "disk" / "s1").memory)
    intact.update(chunks[0].subset(torch.arange(40)), task_id=2)
    assert (tmp_path / "out" / "manifest.json").exists()
