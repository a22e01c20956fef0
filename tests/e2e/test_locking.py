"""Two updates writing one output folder: one wins, the other fails clearly, nothing is corrupted."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import torch
from state_helpers import der, hidden_entries, same_snapshot, snapshot, tree_digest

from retentive.errors import StateError, StateLockedError
from retentive.state import load_state
from retentive.state.locking import OutputLock, lock_is_held, lock_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chunks(split_small):
    train, _ = split_small
    return train[0].subset(torch.arange(64)), train[1].subset(torch.arange(1000))


def _fork(body) -> int:
    """Run ``body()`` in a forked child that exits without touching the test process's state."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def _wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.005)


def test_a_second_lock_on_one_target_is_refused_until_the_first_is_released(tmp_path):
    target = tmp_path / "out"
    first = OutputLock(target).acquire()
    assert lock_is_held(lock_path(target))
    with pytest.raises(StateLockedError, match=rf"being written by another update \(pid {os.getpid()} on"):
        OutputLock(target).acquire()
    with pytest.raises(StateError, match="already held"):
        first.acquire()
    first.release()
    assert not lock_path(target).exists()
    with OutputLock(target) as second:
        assert second.held
    assert not lock_path(target).exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    target = tmp_path / "out"
    read_fd, write_fd = os.pipe()

    def hold_forever():
        lock = OutputLock(target).acquire()
        os.write(write_fd, b"held")
        time.sleep(120)
        lock.release()

    pid = _fork(hold_forever)
    try:
        assert os.read(read_fd, 4) == b"held"
        with pytest.raises(StateLockedError, match=f"pid {pid} on"):
            OutputLock(target).acquire()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_fd)
        os.close(write_fd)
    assert lock_path(target).exists()  # SIGKILL left the file, but the kernel dropped the lock
    assert json.loads(lock_path(target).read_text())["pid"] == pid
    assert not lock_is_held(lock_path(target))
    with OutputLock(target):
        assert json.loads(lock_path(target).read_text())["pid"] == os.getpid()


def test_two_concurrent_updates_of_one_output_one_wins_the_other_fails_clearly(state0_and_chunks, tmp_path):
    state0, chunks = state0_and_chunks
    output = tmp_path / "s1"
    input_before = tree_digest(state0)

    def long_update():  # 5 epochs on 1000 samples: long enough for the second update to collide
        der(output, state0, max_epochs=5).update(chunks[1], task_id=1)

    pid = _fork(long_update)
    try:
        _wait_until(lambda: lock_is_held(lock_path(output)))
        loser = der(output, state0)
        before = snapshot(loser)
        with pytest.raises(
            StateLockedError, match=rf"output_state_folder .*s1' is being written by another update \(pid {pid}"
        ):
            loser.update(chunks[1], task_id=1)
        assert same_snapshot(snapshot(loser), before)  # the loser trained nothing and wrote nothing
        assert not output.exists()  # the winner is still training
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    state = load_state(output)  # the winner's output is complete and verifies
    assert state.manifest["updates_done"] == 2
    assert hidden_entries(tmp_path) == []
    assert tree_digest(state0) == input_before
    with pytest.raises(StateError, match="already exists"):  # and a late third update does not overwrite it
        loser.update(chunks[1], task_id=1)


@pytest.fixture(scope="module")
def state0_and_chunks(tmp_path_factory, chunks):
    folder = tmp_path_factory.mktemp("lock") / "s0"
    der(folder).update(chunks[0], task_id=0)
    return folder, chunks


def test_only_the_global_zero_process_takes_the_lock_and_writes(state0_and_chunks, tmp_path, monkeypatch):
    """With DDP's subprocess launcher every rank runs update(); ranks other than 0 must not contend."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    state0, chunks = state0_and_chunks
    holder = OutputLock(tmp_path / "s1").acquire()  # rank 0 of the same job, say
    try:
        monkeypatch.setattr(rank_zero_only, "rank", 1)
        updater = der(tmp_path / "s1", state0, resume=True)
        updater.update(chunks[1].subset(torch.arange(64)), task_id=1)
        assert updater.updates_done == 2  # it trained
        assert not (tmp_path / "s1").exists() and hidden_entries(tmp_path) == [".retentive-lock-s1"]
    finally:
        holder.release()
