"""The state folder against crashes and tampering: staging debris, format versions, foreign folders,
malicious pickles, and a disk that fills up mid-write."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import torch
from state_helpers import der, edit_manifest, hidden_entries, rehash, same_snapshot, snapshot, tree_digest

import retentive.state.format as state_module
from retentive import StateError, load_model
from retentive.models import MLP
from retentive.state import load_state, read_manifest, save_state
from retentive.state.inspection import inspect_state

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chunks(split_small):
    train, _ = split_small
    return train[0].subset(torch.arange(64)), train[1].subset(torch.arange(64))


@pytest.fixture(scope="module")
def state0(tmp_path_factory, chunks):
    """A real state folder after one DER++ update on digits 0 and 1."""
    folder = tmp_path_factory.mktemp("state") / "s0"
    der(folder).update(chunks[0], task_id=0)
    return folder


@pytest.fixture
def copy0(state0, tmp_path):
    """A private copy of the state folder, free to damage."""
    target = tmp_path / "copy"
    shutil.copytree(state0, target)
    return target


# ---------------------------------------------------------------- staging debris
def test_a_staging_folder_is_never_loaded_as_a_state(state0, tmp_path):
    staging = tmp_path / ".retentive-staging-s1-0123456789ab"
    shutil.copytree(state0, staging)  # even a complete one: the rename never happened
    with pytest.raises(StateError, match="staging folder left by an interrupted write"):
        load_state(staging)
    with pytest.raises(StateError, match="staging folder"):
        der(input_state=staging)


def test_stale_staging_folders_are_removed_by_the_next_write_of_that_target(state0, chunks, tmp_path):
    stale = [tmp_path / ".retentive-staging-s1-0123456789ab", tmp_path / ".retentive-staging-s1-ba9876543210"]
    shutil.copytree(state0, stale[0])
    stale[1].mkdir()
    (stale[1] / "model.pt").write_bytes(b"half a file")
    other = tmp_path / ".retentive-staging-s1-x-0123456789ab"  # target 's1-x', not 's1'
    other.mkdir()
    der(tmp_path / "s1", state0).update(chunks[1], task_id=1)
    assert not stale[0].exists() and not stale[1].exists()
    assert other.exists()
    assert hidden_entries(tmp_path) == [other.name]
    load_state(tmp_path / "s1")


# ---------------------------------------------------------------- format versions and foreign folders
def test_a_newer_format_is_refused_with_an_upgrade_message(copy0):
    edit_manifest(copy0, format_version=2)
    with pytest.raises(StateError, match=r"state format v2, newer than .* upgrade retentive"):
        load_state(copy0)


@pytest.mark.parametrize("version", [0, -1, True, "1", None])
def test_an_older_or_malformed_format_version_is_refused(copy0, version):
    edit_manifest(copy0, format_version=version)
    with pytest.raises(StateError, match="format"):
        read_manifest(copy0)


def test_a_renate_state_folder_is_refused_without_unpickling_it(tmp_path):
    folder = tmp_path / "renate_state"
    folder.mkdir()
    for name in ("learner.ckpt", "model.ckpt"):
        (folder / name).write_bytes(b"not read")
    with pytest.raises(StateError, match="Renate state folder"):
        load_state(folder)


def test_a_resume_checkpoint_is_not_a_state(copy0):
    edit_manifest(copy0, kind="checkpoint")
    with pytest.raises(StateError, match="resume checkpoint of an unfinished update"):
        load_state(copy0)
    assert load_state(copy0, allow_checkpoint=True).manifest["kind"] == "checkpoint"
    edit_manifest(copy0, kind="something-else")
    with pytest.raises(StateError, match="has kind"):
        load_state(copy0, allow_checkpoint=True)


# ---------------------------------------------------------------- code execution
class _RunsCode:
    """Unpickling this runs ``exec``, which creates ``marker``: the attack weights_only must stop."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-pickle"])
@pytest.mark.parametrize("name", ["model.pt", "memory.pt", "learner.pt"])
def test_a_malicious_pickle_with_a_valid_checksum_is_refused_and_runs_nothing(copy0, tmp_path, name, zipped):
    marker = tmp_path / "marker"
    probe = tmp_path / "probe"
    # Control: the payload is real, an unsafe load does run it.
    torch.save({"weight": _RunsCode(probe)}, tmp_path / "control.pt", _use_new_zipfile_serialization=zipped)
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert probe.read_text() == "pwned"

    torch.save({"weight": _RunsCode(marker)}, copy0 / name, _use_new_zipfile_serialization=zipped)
    rehash(copy0)  # the manifest vouches for it: only weights_only stands in the way
    with pytest.raises(StateError, match=f"{name}.*could not be read safely"):
        load_state(copy0)
    with pytest.raises(StateError, match="could not be read safely"):
        der(input_state=copy0)
    with pytest.raises(StateError, match="could not be read safely"):
        load_model(MLP(), copy0)
    report = inspect_state(copy0)
    assert not report.verified and "could not be read safely" in report.error
    assert not marker.exists()


# ---------------------------------------------------------------- a disk that fills up
def test_a_failing_write_leaves_no_output_and_puts_everything_back(state0, chunks, tmp_path, monkeypatch):
    before_input = tree_digest(state0)
    updater = der(tmp_path / "s1", state0)
    before = snapshot(updater)
    real_write = state_module._write_payload
    written = []

    def disk_full(path, payload):
        if written:  # the second file hits a full disk half-way
            path.write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path)
        return real_write(path, payload)

    monkeypatch.setattr(state_module, "_write_payload", disk_full)
    with pytest.raises(StateError, match="No space left on device.*nothing was written"):
        updater.update(chunks[1], task_id=1)
    assert not (tmp_path / "s1").exists()
    assert hidden_entries(tmp_path) == []  # no staging folder, no lock file
    assert same_snapshot(snapshot(updater), before)
    assert tree_digest(state0) == before_input
    monkeypatch.setattr(state_module, "_write_payload", real_write)
    updater.update(chunks[1], task_id=1)  # space freed: the same updater succeeds
    load_state(tmp_path / "s1")


def test_save_state_refuses_a_lock_it_does_not_hold(state0, tmp_path):
    from retentive.state.locking import OutputLock

    with pytest.raises(StateError, match="not held"):
        save_state(tmp_path / "x", load_state(state0), lock=OutputLock(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
