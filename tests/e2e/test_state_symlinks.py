"""A symbolic link planted where a writer creates its lock, its output or its resume folder is
refused, never followed: the file or folder it points to stays byte-identical."""

from __future__ import annotations

import os
import shutil

import pytest
from state_helpers import der, tree_digest

from retentive.errors import StateError
from retentive.state.inplace import rollback
from retentive.state.locking import OutputLock, lock_path
from retentive.state.resume import checkpoint_root

pytestmark = pytest.mark.slow


@pytest.fixture()
def victim(tmp_path):
    """A file elsewhere that an attacker wants overwritten."""
    path = tmp_path / "elsewhere" / "precious.txt"
    path.parent.mkdir()
    path.write_bytes(b"not yours to overwrite\n")
    return path


def test_a_lock_file_planted_as_a_symlink_is_refused_for_a_new_output(state1, chunks, tmp_path, victim):
    os.symlink(victim, lock_path(tmp_path / "out"))
    updater = der(tmp_path / "out", state1)
    with pytest.raises(
        StateError, match=r"the lock file .*\.retentive-lock-out' is a symbolic link \(to .*precious\.txt'\)"
    ):
        updater.update(chunks[1], task_id=1)
    assert victim.read_bytes() == b"not yours to overwrite\n"
    assert not (tmp_path / "out").exists() and lock_path(tmp_path / "out").is_symlink()


def test_a_lock_file_planted_as_a_symlink_is_refused_in_place_and_by_rollback(state1, chunks, tmp_path, victim):
    folder = tmp_path / "s"
    shutil.copytree(state1, folder)
    der(folder, folder).update(chunks[1], task_id=1)
    before = tree_digest(folder)
    os.symlink(victim, lock_path(folder))
    with pytest.raises(StateError, match="is a symbolic link"):
        der(folder, folder).update(chunks[1], task_id=2)
    with pytest.raises(StateError, match="is a symbolic link"):
        rollback(folder)
    assert victim.read_bytes() == b"not yours to overwrite\n" and tree_digest(folder) == before


def test_a_dangling_lock_symlink_is_not_created_through(tmp_path):
    target = tmp_path / "nowhere" / "created.txt"
    os.symlink(target, lock_path(tmp_path / "out"))
    with pytest.raises(StateError, match="is a symbolic link"):
        OutputLock(tmp_path / "out").acquire()
    assert not target.exists() and not target.parent.exists()


def test_an_output_planted_as_a_dangling_symlink_is_never_written_through(state1, chunks, tmp_path):
    target = tmp_path / "elsewhere"
    os.symlink(target, tmp_path / "out")
    with pytest.raises(StateError, match="already exists"):
        der(tmp_path / "out", state1)
    assert not target.exists()


def test_a_resume_folder_planted_as_a_symlink_is_refused_and_its_target_untouched(state1, chunks, tmp_path, victim):
    os.symlink(victim.parent, checkpoint_root(tmp_path / "out"))
    updater = der(tmp_path / "out", state1, resume=True, max_epochs=2)
    with pytest.raises(StateError, match=r"the resume folder .*\.retentive-resume-out' is a symbolic link"):
        updater.update(chunks[1], task_id=1)
    assert sorted(p.name for p in victim.parent.iterdir()) == ["precious.txt"]
    assert victim.read_bytes() == b"not yours to overwrite\n"
