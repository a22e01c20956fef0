"""A full disk anywhere a local update writes (the lock, the staging folder of a new output, the
in-place swap, a resume checkpoint): one StateError, nothing left behind, the lock released, and
the same updater succeeds once space is freed.

Each test mounts a small tmpfs and fills it; where mounting is not permitted (no root, no tmpfs)
they are skipped, saying so.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import pytest
from state_helpers import der, hidden_entries, same_snapshot, snapshot, tree_digest

from retentive.errors import StateError
from retentive.state import load_state
from retentive.state.locking import OutputLock, lock_path

pytestmark = pytest.mark.slow


@pytest.fixture()
def disk(tmp_path):
    """A 4 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({done.stderr.strip() or done.returncode}); these tests need root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(mount: Path, leave: int = 0) -> Path:
    """Fill ``mount`` to the last page, then free ``leave`` bytes (a separate file, deleted)."""
    reserve = mount / "reserve"
    if leave:
        reserve.write_bytes(b"\0" * leave)
    filler = mount / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for block in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    handle.write(b"\0" * block)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    reserve.unlink(missing_ok=True)
    return filler


def _one_line_no_space(error: StateError) -> None:
    text = str(error)
    assert "No space left on device" in text and "\n" not in text, text


def test_a_full_disk_while_the_lock_is_written_is_one_state_error_and_leaves_no_lock(disk):
    filler = fill(disk)
    with pytest.raises(
        StateError, match=r"cannot write the lock file .*\.retentive-lock-out.*nothing was written"
    ) as caught:
        OutputLock(disk / "out").acquire()
    _one_line_no_space(caught.value)
    assert hidden_entries(disk) == []  # no lock file, and (in this process) no locked descriptor left
    filler.unlink()
    with OutputLock(disk / "out") as lock:  # the same process takes it once there is space
        assert lock.held
    assert not lock_path(disk / "out").exists()


def test_a_full_disk_while_a_new_output_is_staged_leaves_nothing_and_a_retry_succeeds(disk, state1, chunks):
    filler = fill(disk, leave=64 << 10)  # room for the lock record, not for the state
    updater = der(disk / "out", state1)
    kept = snapshot(updater)
    with pytest.raises(StateError, match=r"writing the state to .*out' failed .*nothing was written there") as caught:
        updater.update(chunks[1], task_id=1)
    _one_line_no_space(caught.value)
    assert same_snapshot(snapshot(updater), kept)
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no output, staging folder or lock file
    filler.unlink()
    updater.update(chunks[1], task_id=1)
    assert load_state(disk / "out").manifest["updates_done"] == 2


def test_a_full_disk_during_an_in_place_swap_leaves_the_folder_as_it_was(disk, state1, chunks):
    folder = disk / "s"
    shutil.copytree(state1, folder)
    before = tree_digest(folder)
    filler = fill(disk, leave=64 << 10)
    updater = der(folder, folder)
    with pytest.raises(StateError) as caught:
        updater.update(chunks[1], task_id=1)
    _one_line_no_space(caught.value)
    assert tree_digest(folder) == before and updater.updates_done == 1
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "s"]
    filler.unlink()
    updater.update(chunks[1], task_id=1)
    assert load_state(folder).manifest["updates_done"] == 2


def test_a_full_disk_while_a_resume_checkpoint_is_written_leaves_nothing(disk, state1, chunks):
    filler = fill(disk, leave=64 << 10)
    updater = der(disk / "out", state1, resume=True, max_epochs=2)
    with pytest.raises(StateError) as caught:  # the checkpoint after epoch 1
        updater.update(chunks[1], task_id=1)
    _one_line_no_space(caught.value)
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no resume folder, staging folder or lock
    filler.unlink()
    updater.update(chunks[1], task_id=1)
    assert load_state(disk / "out").manifest["updates_done"] == 2
    assert sorted(p.name for p in disk.iterdir()) == ["out"]
