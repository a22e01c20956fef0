"""Writers of one local state folder commit only onto the version they read.

Real processes: in-place updates built on one version and released together or one after the
other, and an update racing a `retentive rollback`. Exactly one writer wins each race; the others
get StateConflictError (or StateLockedError while the winner holds the folder) with the folder as
the winner left it: no update is lost and no rollback is silently undone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from state_helpers import der, hidden_entries, tree_digest

from retentive.errors import StateConflictError, StateError
from retentive.state import load_state
from retentive.state.concurrency import manifest_digest, read_versioned
from retentive.state.inplace import previous_path, rollback

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1] / "support"
ROOT = TESTS.parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def base(tmp_path_factory, split_small):
    """A state folder after one update (updates_done 1), and a chunk file for the next update."""
    train, _ = split_small
    work = tmp_path_factory.mktemp("concurrency")
    der(work / "s").update(train[0].subset(torch.arange(64)), task_id=0)
    chunk = train[1].subset(torch.arange(64))
    torch.save({"inputs": chunk.inputs, "targets": chunk.targets}, work / "chunk.pt")
    return work / "s", work / "chunk.pt", chunk


@pytest.fixture()
def folder(base, tmp_path):
    shutil.copytree(base[0], tmp_path / "s")
    return tmp_path / "s"


class Worker:
    """`concurrency_worker.py`: builds an in-place updater now, updates once `go` exists."""

    def __init__(self, folder: Path, chunk: Path, go: Path) -> None:
        self.go = go
        self.process = subprocess.Popen(
            [sys.executable, str(TESTS / "concurrency_worker.py"), str(folder), str(chunk), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )

    def built(self) -> None:
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "built", line + self.process.stderr.read()  # type: ignore[union-attr]

    def result(self) -> dict:
        out, err = self.process.communicate(timeout=180)
        assert self.process.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])


def _updates_done(folder: Path) -> int:
    return load_state(folder).manifest["updates_done"]


def test_an_update_built_before_another_committed_gets_a_conflict_not_a_lost_update(base, folder, tmp_path):
    """Finding 2 as reproduced: both built on version 1; the first commits 2; the second must not
    write 2 again on top (which lost the first's update)."""
    first, second = Worker(folder, base[1], tmp_path / "go1"), Worker(folder, base[1], tmp_path / "go2")
    first.built()
    second.built()
    read = manifest_digest(folder)
    (tmp_path / "go1").touch()
    assert first.result() == {"outcome": "committed", "updates_done": 2}
    after_first = tree_digest(folder)
    (tmp_path / "go2").touch()
    outcome = second.result()
    assert outcome["outcome"] == "conflict", outcome
    assert read[:12] in outcome["message"] and manifest_digest(folder)[:12] in outcome["message"]
    assert "updates_done 2" in outcome["message"]
    assert "Nothing was trained or written (build the updater again" in outcome["message"]
    assert tree_digest(folder) == after_first  # untouched by the loser
    assert _updates_done(folder) == 2
    assert hidden_entries(tmp_path) == [previous_path(folder).name]  # no staging debris, no lock file


def test_in_place_updates_released_together_commit_exactly_once(base, folder, tmp_path):
    workers = [Worker(folder, base[1], tmp_path / "go") for _ in range(2)]
    for worker in workers:
        worker.built()
    (tmp_path / "go").touch()
    outcomes = [worker.result() for worker in workers]
    committed = [o for o in outcomes if o["outcome"] == "committed"]
    assert len(committed) == 1, outcomes
    assert all(o["outcome"] in ("conflict", "locked") for o in outcomes if o not in committed), outcomes
    assert _updates_done(folder) == 2  # every commit accounted for, none lost
    assert load_state(folder).manifest["replaces"] == manifest_digest(base[0])
    assert hidden_entries(tmp_path) == [previous_path(folder).name]


def _rollback_cli(folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "retentive.cli", "rollback", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def test_an_update_built_before_a_rollback_conflicts_instead_of_undoing_it(base, folder, tmp_path):
    der(folder, folder).update(base[2], task_id=1)  # version 2; version 1 kept for rollback
    version1 = tree_digest(previous_path(folder))
    worker = Worker(folder, base[1], tmp_path / "go")
    worker.built()  # read version 2
    done = _rollback_cli(folder)
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert tree_digest(folder) == version1
    (tmp_path / "go").touch()
    outcome = worker.result()
    assert outcome["outcome"] == "conflict", outcome
    assert tree_digest(folder) == version1 and _updates_done(folder) == 1  # the rollback stands


def test_an_update_racing_a_rollback_never_builds_on_the_rolled_back_version(base, folder, tmp_path):
    der(folder, folder).update(base[2], task_id=1)
    version1, version2 = manifest_digest(previous_path(folder)), manifest_digest(folder)
    worker = Worker(folder, base[1], tmp_path / "go")
    worker.built()  # read version 2
    (tmp_path / "go").touch()
    time.sleep(0.05 * (os.getpid() % 5))  # a different interleaving on different runs
    back = _rollback_cli(folder)
    _, rolled_err = back.communicate(timeout=180)
    outcome = worker.result()
    final = load_state(folder).manifest
    if outcome["outcome"] == "committed":  # built on version 2 only; the rollback refused or undid it
        assert outcome["updates_done"] == 3
        if back.returncode == 0:
            assert manifest_digest(folder) == version2
        else:
            assert "being written by another update" in rolled_err
            assert final["replaces"] == version2 and final["updates_done"] == 3
    else:  # the rollback came first: the update saw it and wrote nothing
        assert back.returncode == 0, rolled_err
        assert outcome["outcome"] in ("conflict", "locked"), outcome
        assert manifest_digest(folder) == version1
    assert [e for e in hidden_entries(tmp_path) if not e.startswith(".retentive-previous-")] == []


def test_a_second_update_on_one_updater_builds_on_its_own_commit(base, folder):
    updater = der(folder, folder)
    updater.update(base[2], task_id=1)
    updater.update(base[2], task_id=2)
    assert updater.updates_done == 3 and _updates_done(folder) == 3
    assert updater.state_version == manifest_digest(folder)


def test_a_stale_updater_in_the_same_process_gets_a_conflict_and_writes_nothing(base, folder, tmp_path):
    stale, fresh = der(folder, folder, resume=True), der(folder, folder)
    fresh.update(base[2], task_id=1)
    after = tree_digest(folder)
    with pytest.raises(
        StateConflictError,
        match=r"changed since this update read it: it read version [0-9a-f]{12} "
        r"\(updates_done 1\), the folder now holds [0-9a-f]{12} \(updates_done 2",
    ):
        stale.update(base[2], task_id=1)
    assert stale.updates_done == 1 and tree_digest(folder) == after
    assert hidden_entries(tmp_path) == [previous_path(folder).name]


def test_a_conflict_found_at_the_commit_discards_the_new_state_and_its_checkpoints(base, folder, tmp_path):
    """The commit compares again under the lock (here a writer that ignores the lock edits the
    manifest while the update trains); the trained state and its resume checkpoint are discarded."""
    updater = der(folder, folder, resume=True)
    after_fit = updater.after_fit

    def meanwhile(*args):
        after_fit(*args)
        manifest = folder / "manifest.json"
        manifest.write_text(manifest.read_text() + "\n")

    updater.after_fit = meanwhile
    with pytest.raises(StateConflictError, match="Nothing was written; the new state was discarded"):
        updater.update(base[2], task_id=1)
    assert updater.updates_done == 1 and _updates_done(folder) == 1
    assert hidden_entries(tmp_path) == []  # no staging folder, checkpoint, rollback copy or lock


def test_rollback_compares_and_swaps(base, folder):
    der(folder, folder).update(base[2], task_id=1)
    version2 = manifest_digest(folder)
    with pytest.raises(StateConflictError, match="not '0123456789ab', the version to roll back; nothing was changed"):
        rollback(folder, expected="0123456789ab")
    assert manifest_digest(folder) == version2
    rollback(folder, expected=version2[:12])
    assert manifest_digest(folder) != version2


def test_rollback_refuses_a_copy_that_is_not_what_the_folder_replaced(base, folder):
    der(folder, folder).update(base[2], task_id=1)
    shutil.rmtree(previous_path(folder))
    shutil.copytree(folder, previous_path(folder))  # a valid state, but not the one the folder replaced
    before = tree_digest(folder)
    with pytest.raises(StateConflictError, match="is not the version"):
        rollback(folder)
    assert tree_digest(folder) == before


def test_read_versioned_names_exactly_what_it_loaded(base):
    state, version = read_versioned(base[0])
    assert version == manifest_digest(base[0]) and state.manifest["updates_done"] == 1
    with pytest.raises(StateError):
        read_versioned(base[0].parent / "missing")


def test_the_cli_exits_75_when_another_writer_holds_or_changed_the_state(base, folder, capsys):
    """75 (retry) is distinct from 1 (fix something): nothing was written, and the same command run
    again once the other writer is done builds on its result."""
    from retentive.cli import main
    from retentive.cli.failures import exit_code
    from retentive.state.locking import OutputLock

    der(folder, folder).update(base[2], task_id=1)  # a version to roll back to
    before = tree_digest(folder)
    with OutputLock(folder):
        assert main(["rollback", str(folder)]) == 75
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "being written by another update" in err
    assert tree_digest(folder) == before
    assert exit_code(StateConflictError("changed")) == 75 and exit_code(StateError("bad")) == 1
    assert main(["rollback", str(folder)]) == 0  # the retry succeeds
