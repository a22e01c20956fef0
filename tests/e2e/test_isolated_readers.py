"""Isolated readers: a reader during in-place swaps and rollbacks gets one whole version, never a mix of
two, and never a false "modified or truncated" error. Real processes: one swaps the folder in a
tight loop (retentive.state.inplace.swap_in and rollback), another loads it in a loop."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reader_race_worker import marked_state, marks

from retentive.errors import StateError
from retentive.state import MANIFEST, State, load_state, read_manifest, save_state
from retentive.state.inplace import exchange
from retentive.state.reading import FolderVersion, read_consistently

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().parents[1] / "support" / "reader_race_worker.py"
SECONDS = 5.0


def _worker(role: str, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), str(WORKER.parent)])}
    return subprocess.Popen(
        [sys.executable, str(WORKER), role, str(folder), str(SECONDS)], stdout=subprocess.PIPE, text=True, env=env
    )


def test_reader_during_swap_loop_sees_whole_versions_only(tmp_path):
    folder = save_state(tmp_path / "state", marked_state(1))
    swapper = _worker("swap", folder)
    reader = _worker("read", folder)
    read_out, _ = reader.communicate(timeout=120)
    swap_out, _ = swapper.communicate(timeout=120)
    assert swapper.returncode == 0 and reader.returncode == 0
    swaps, reads = json.loads(swap_out), json.loads(read_out)
    assert swaps["swaps"] >= 20 and swaps["rollbacks"] >= 5, swaps  # the folder really changed under the reader
    assert reads["loads"] >= 20 and reads["versions"] >= 5, reads
    assert reads["mixed"] == 0, f"{reads['mixed']} of {reads['loads']} loads mixed two versions"
    assert reads["errors"] == 0, f"{reads['errors']} false errors during legitimate swaps: {reads['first_errors']}"
    assert len(marks(load_state(folder))) == 1


def test_a_file_missing_from_a_folder_that_did_not_change_is_still_an_error(tmp_path):
    folder = save_state(tmp_path / "state", marked_state(1))
    (folder / "learner.pt").unlink()
    with pytest.raises(StateError, match="learner.pt.*missing"):
        load_state(folder)


def test_payload_symlinks_are_not_followed(tmp_path):
    folder = save_state(tmp_path / "state", marked_state(1))
    other = save_state(tmp_path / "other", marked_state(2))
    (folder / "model.pt").unlink()
    (folder / "model.pt").symlink_to(other / "model.pt")
    with pytest.raises(StateError, match="model.pt"):
        load_state(folder)
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").symlink_to(other / "manifest.json")
    with pytest.raises(StateError, match="manifest.json"):
        read_manifest(folder)


def test_a_read_whose_version_is_discarded_midway_starts_again_from_the_path(tmp_path):
    """The version a read began on is swapped out and deleted before its payload is opened: the
    read starts again on the version the path names now, and never mixes the two."""
    folder = save_state(tmp_path / "state", marked_state(1))
    newer = save_state(tmp_path / "newer", marked_state(2))
    attempts: list[int] = []

    def read(version: FolderVersion) -> State:
        attempts.append(json.loads(version.read(MANIFEST))["marker"])
        if len(attempts) == 1:
            exchange(newer, folder)  # the path names version 2 now; version 1 sits at `newer`
            shutil.rmtree(newer)  # ... and is discarded
        return State(torch.load(io.BytesIO(version.read("model.pt")), weights_only=True), {}, {}, {})

    state = read_consistently(folder, read)
    assert attempts == [1, 2] and int(state.model["w"][0, 0]) == 2
    assert len(marks(load_state(folder))) == 1
