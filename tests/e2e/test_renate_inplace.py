"""In-place updates (``input_state_folder == output_state_folder``, Renate's pipelines) and rollback."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from helpers import QUIET, sgd
from torch import nn

from retentive import DarkExperienceReplayModelUpdater, DataError, StateError
from retentive.models import MLP
from retentive.state import load_state
from retentive.state.concurrency import manifest_digest
from retentive.state.inplace import previous_path, rollback
from retentive.state.staging import staging_folders

pytestmark = pytest.mark.slow


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def der(folder: Path | None, input_folder: Path | None = None):
    torch.manual_seed(0)
    return DarkExperienceReplayModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(reduction="none"),
        sgd(),
        memory_size=60,
        batch_size=20,
        input_state_folder=input_folder,
        output_state_folder=folder,
        **QUIET,
    )


@pytest.fixture()
def chunks(mnist_train):
    from conftest import small_split

    return small_split(mnist_train, 60)


def test_two_in_place_updates_then_rollback_bit_for_bit(chunks, tmp_path):
    folder = tmp_path / "state"
    der(folder).update(chunks[0], task_id="a")
    after_first = digest(folder)
    assert not previous_path(folder).exists()

    der(folder, folder).update(chunks[1], task_id="b")
    after_second = digest(folder)
    assert digest(previous_path(folder)) == after_first  # the version replaced, kept as it was
    assert load_state(folder).manifest["task_order"] == ["a", "b"]

    der(folder, folder).update(chunks[2], task_id="c")
    assert digest(previous_path(folder)) == after_second  # only the last version is kept
    assert load_state(folder).manifest["task_order"] == ["a", "b", "c"]
    assert staging_folders(tmp_path) == []

    rollback(folder)
    assert digest(folder) == after_second and not previous_path(folder).exists()
    with pytest.raises(StateError, match="has no previous version to roll back to"):
        rollback(folder)
    assert digest(folder) == after_second  # the refused rollback changed nothing


def test_rollback_syncs_the_folder_holding_the_swapped_entries_after_the_swap(chunks, tmp_path, monkeypatch):
    """A rollback survives a power cut only once the directory entries it exchanged are on disk:
    the folder holding the state and its rollback copy is fsynced after the exchange."""
    folder = tmp_path / "state"
    der(folder).update(chunks[0])
    der(folder, folder).update(chunks[1])
    rolled_back = manifest_digest(previous_path(folder))
    parent = os.stat(tmp_path)
    swapped_when_synced: list[bool] = []  # per fsync of the parent folder: was the swap made?
    real_fsync = os.fsync

    def recording(fd: int) -> None:
        stat = os.fstat(fd)
        if (stat.st_dev, stat.st_ino) == (parent.st_dev, parent.st_ino):
            swapped_when_synced.append(manifest_digest(folder) == rolled_back)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    rollback(folder)
    assert manifest_digest(folder) == rolled_back
    assert swapped_when_synced and swapped_when_synced[-1], "the parent folder is synced after the swap"


def test_rollback_with_no_previous_version_is_refused_before_anything_changes(chunks, tmp_path):
    folder = tmp_path / "state"
    der(folder).update(chunks[0])
    before = digest(folder)
    with pytest.raises(StateError, match=r"has no previous version to roll back to: only an in-place update keeps one"):
        rollback(folder)
    assert digest(folder) == before
    assert not any(p.name.startswith((".retentive-staging", ".retentive-previous")) for p in tmp_path.iterdir())


def test_a_failed_in_place_update_leaves_the_folder_and_its_previous_version(chunks, tmp_path):
    folder = tmp_path / "state"
    der(folder).update(chunks[0])
    der(folder, folder).update(chunks[1])
    current, previous = digest(folder), digest(previous_path(folder))
    shape = chunks[1][0][0].shape  # samples as the memory holds them, but NaN
    bad = torch.utils.data.TensorDataset(torch.full((4, *shape), float("nan")), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match="NaN|finite"):  # refused before training
        der(folder, folder).update(bad)
    assert digest(folder) == current and digest(previous_path(folder)) == previous


def test_in_place_update_equals_an_update_to_a_new_folder(chunks, tmp_path):
    der(tmp_path / "s0").update(chunks[0])
    der(tmp_path / "s1", tmp_path / "s0").update(chunks[1])
    der(tmp_path / "s0", tmp_path / "s0").update(chunks[1])
    a, b = load_state(tmp_path / "s1"), load_state(tmp_path / "s0")
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    assert all(torch.equal(a.memory["storage"][k], b.memory["storage"][k]) for k in a.memory["storage"])
