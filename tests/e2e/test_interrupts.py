"""Ctrl-C and SIGTERM during an update: the commit is never split and the caller is told whether it
happened.

Python callers get a KeyboardInterrupt (UpdateInterrupted, with ``committed``), not Lightning's
SystemExit(1), and SIGINT works again afterwards; `retentive update` prints one line and exits 130
when nothing was committed, 0 when the signal arrived during the commit (which completed).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
from state_helpers import der, hidden_entries, same_snapshot, snapshot, tree_digest

from retentive.cli import main
from retentive.data.files import write_chunk
from retentive.state import load_state
from retentive.state.inplace import previous_path
from retentive.state.interrupts import CommitGuard, UpdateInterrupted
from retentive.state.locking import lock_path

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "PYTHONFAULTHANDLER": "1",
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
}


class CtrlC(pl.Callback):
    """A real SIGINT to this process after the second training step (as a terminal's Ctrl-C)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the handler runs at the next bytecode


def test_ctrl_c_during_training_reaches_a_python_caller_as_keyboard_interrupt(state1, chunks, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(state1, folder)
    before = tree_digest(folder)
    updater = der(folder, folder, callbacks=[CtrlC()])
    kept = snapshot(updater)
    with pytest.raises(KeyboardInterrupt) as caught:  # not Lightning's SystemExit(1)
        updater.update(chunks[1], task_id=1)
    assert isinstance(caught.value, UpdateInterrupted) and caught.value.committed is False
    assert str(caught.value) == f"interrupted before the new state was committed; {str(folder)!r} is unchanged"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Lightning left it ignored
    assert same_snapshot(snapshot(updater), kept) and tree_digest(folder) == before
    assert hidden_entries(tmp_path) == []


def test_a_first_ctrl_c_during_a_step_is_raised_at_the_step_boundary_a_second_at_once(state1, chunks, tmp_path):
    """A KeyboardInterrupt inside a logger's writer hangs Lightning's clean-up (TensorBoard's event
    writer): the first Ctrl-C lets the step finish; a second one does not wait."""
    for presses, finished in ((1, [True]), (2, [])):
        updater = der(tmp_path / f"out{presses}", state1)
        steps: list[bool] = []
        finished_step: list[bool] = []

        def forward_hook(module, inputs, output, presses=presses, steps=steps, finished_step=finished_step):
            if module.training and not finished_step:  # a training step (the input checks run in eval mode)
                finished_step.append(True)
                for _ in range(presses):
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.2)
                steps.append(True)  # reached only if the signal did not interrupt this step

        handle = updater.model.register_forward_hook(forward_hook)
        with pytest.raises(UpdateInterrupted, match="is unchanged"):
            updater.update(chunks[1], task_id=1)
        handle.remove()
        assert steps == finished and not (tmp_path / f"out{presses}").exists()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert hidden_entries(tmp_path) == []


def _interrupt_after_exchange(monkeypatch, signum: int = signal.SIGINT) -> None:
    from retentive.state import inplace

    exchange = inplace.exchange

    def exchanged_then_signalled(a, b):
        exchange(a, b)
        os.kill(os.getpid(), signum)
        time.sleep(0.2)

    monkeypatch.setattr(inplace, "exchange", exchanged_then_signalled)


def test_ctrl_c_during_the_commit_is_held_until_it_is_complete_and_says_so(state1, chunks, tmp_path, monkeypatch):
    folder = tmp_path / "s"
    shutil.copytree(state1, folder)
    before = tree_digest(folder)
    _interrupt_after_exchange(monkeypatch)
    updater = der(folder, folder)
    with pytest.raises(
        UpdateInterrupted, match="interrupted after the new state was committed to .*the update is complete"
    ) as caught:
        updater.update(chunks[1], task_id=1)
    assert caught.value.committed is True
    assert updater.updates_done == 2 and load_state(folder).manifest["updates_done"] == 2  # the updater kept it
    assert tree_digest(previous_path(folder)) == before  # the old state is the rollback copy, not deleted
    assert hidden_entries(tmp_path) == [previous_path(folder).name]
    monkeypatch.undo()
    updater.update(chunks[1], task_id=2)  # and it builds on its own commit
    assert load_state(folder).manifest["updates_done"] == 3


def test_sigterm_during_the_commit_reaches_the_program_s_handler_after_it(state1, chunks, tmp_path, monkeypatch):
    folder = tmp_path / "s"
    shutil.copytree(state1, folder)
    _interrupt_after_exchange(monkeypatch, signal.SIGTERM)
    seen: list[bool] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(previous_path(folder).exists()))
    try:
        der(folder, folder).update(chunks[1], task_id=1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [True]  # delivered once, after the old state was kept for rollback


def test_an_update_in_another_thread_commits_without_touching_signal_handlers(state1, chunks, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(state1, folder)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            der(folder, folder).update(chunks[1], task_id=1)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == [] and load_state(folder).manifest["updates_done"] == 2


def test_commit_guard_delivers_what_it_held():
    handled: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: handled.append(signum))
    try:
        guard = CommitGuard()
        guard.start()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert handled == [] and guard.held == [signal.SIGTERM]
        guard.deliver(True, "unused")
        assert handled == [signal.SIGTERM] and signal.getsignal(signal.SIGTERM) is not guard._hold
    finally:
        signal.signal(signal.SIGTERM, previous)
    guard = CommitGuard()
    guard.start()
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)
    with pytest.raises(UpdateInterrupted, match="^kept$"):
        guard.deliver(False, "kept")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    CommitGuard().deliver(True, "nothing held: no effect")


@pytest.fixture(scope="module")
def long_chunk(tmp_path_factory, split_small):
    train, _ = split_small
    path = tmp_path_factory.mktemp("chunk") / "chunk.npz"
    write_chunk(path, train[1])
    return path


def test_sigint_to_a_real_retentive_update_exits_130_with_one_line(state1, long_chunk, tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(state1, folder)
    before = tree_digest(folder)
    command = [
        sys.executable,
        "-m",
        "retentive.cli",
        "update",
        "--config",
        ROOT / "configs" / "der.yaml",
        "--data",
        long_chunk,
        "--input-state",
        folder,
        "--output-state",
        folder,
        "--threads",
        "1",
        "--set",
        "trainer.max_epochs=100",
        "--set",
        "logger=false",
        "--set",
        "updater.init_args.memory_size=50",
    ]
    process = subprocess.Popen(
        list(map(str, command)),
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,  # a terminal's Ctrl-C, even if this runs in background
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # noqa: PLW1509
    try:
        deadline = time.monotonic() + 120
        while not lock_path(folder).exists():  # update() holds the lock from its start: training begins
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired as hung:
            process.send_signal(signal.SIGABRT)
            out, err = process.communicate(timeout=60)
            raise AssertionError(err[-5000:]) from hung
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert err.splitlines() == [
        f"retentive update: error: interrupted before the new state was committed; {str(folder)!r} is unchanged"
    ], err
    assert out == ""
    assert tree_digest(folder) == before and hidden_entries(tmp_path) == []


def test_retentive_update_interrupted_during_its_commit_exits_0_and_says_it_committed(
    state1, long_chunk, tmp_path, monkeypatch
):
    folder = tmp_path / "s"
    shutil.copytree(state1, folder)
    _interrupt_after_exchange(monkeypatch)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            [
                "update",
                "--config",
                str(ROOT / "configs" / "der.yaml"),
                "--data",
                str(long_chunk),
                "--input-state",
                str(folder),
                "--output-state",
                str(folder),
                "--set",
                "logger=false",
                "--set",
                "updater.init_args.memory_size=50",
            ]
        )
    assert code == 0
    assert err.getvalue().splitlines() == [
        f"retentive update: interrupted after the new state was committed to {str(folder)!r}; the update is complete"
    ]
    assert load_state(folder).manifest["updates_done"] == 2
