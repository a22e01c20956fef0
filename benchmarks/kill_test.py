"""Kill test: SIGKILL an update at random moments and check that nothing is ever corrupt.

Each trial forks a worker that runs one ``update()`` (real MNIST, DER++, ``resume=True``) from a
fixed input state folder, and kills it with SIGKILL at a random moment: half the trials during
training (uniform over the training time, epoch checkpoints included), half during the save
(uniform over the time from the end of training to the end of the update: components' end hooks,
the final checkpoint, the atomic save, the checkpoint clean-up); both windows are the shortest of
three clean runs. The worker reports each stage through a pipe, so every kill is attributed to
the stage it interrupted. After each kill it checks that

* the input folder is byte-identical (every file's sha256, and no file added or removed);
* the output folder is either absent, or complete: it verifies, loads into a fresh updater, and
  equals the reference output of an uninterrupted run bit for bit;
* a rerun with ``resume=True`` finishes, continuing from the last completed epoch, and writes the
  same state as the uninterrupted run, leaving no staging folder, lock file or checkpoint behind
  (a kill after the save, while the checkpoints are being removed, leaves them as debris that
  :func:`retentive.state.housekeeping.remove_leftovers` clears; that is counted, not corrupt).

A corrupt outcome is any violation. Run (about 2-3 minutes on 2 cores):

    python benchmarks/kill_test.py --kills 30 --seed 0

``--signal SIGINT`` (or ``SIGTERM``) sends that signal to an in-place update right after each step
of its swap instead: the commit holds it back, so the folder holds the old state (signal before
the exchange) or the new one with its rollback copy (after), never a mix, and the
``KeyboardInterrupt`` the caller gets says which (``committed``).

``--in-place`` kills in-place updates (input folder = output folder, Renate's pipelines) instead:
half the trials at a random moment of the save (uniform from the end of training to the end of
the update), half with the worker killing itself exactly after one step of the swap (the new
state staged; the exchange; the older rollback copy renamed to debris; its removal; the old
state renamed to the rollback copy), cycling through them. After each kill the folder must load
and equal either the state before the update or the uninterrupted in-place run's, bit for bit,
never a mix; when it holds the new state, ``rollback`` must restore the old one byte for byte.

``--promote`` kills the promote of a model home's candidate instead, at random moments and right
after each step of its commit (``benchmarks/promote_kill.py``): the home must hold exactly the old
or the new current version, whole, every time.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import select
import shutil
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from quiet_cpu import QUIET_CPU

from retentive import DarkExperienceReplayModelUpdater, StateError
from retentive.data import TensorChunk, load_mnist, split_mnist
from retentive.models import MLP
from retentive.state import load_state
from retentive.state.housekeeping import remove_leftovers
from retentive.state.resume import checkpoint_root

FIT_START, FIT_END, DONE, FAILED = b"F", b"E", b"D", b"X"
#: What the worker was doing when it died, by the last mark it sent.
STAGES = {
    b"F": "training",
    b"c": "training",
    b"C": "writing an epoch checkpoint",
    b"E": "end-of-training hooks",
    b"K": "writing the final checkpoint",
    b"k": "between checkpoint and save",
    b"S": "writing the output",
    b"s": "after the save",
    b"R": "removing the checkpoints",
    b"r": "finished",
    b"D": "finished",
}


@dataclass
class Setup:
    workdir: Path
    input_state: Path
    chunk: TensorChunk
    epochs: int
    memory_size: int


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256), directories included as entries."""
    digest: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        digest[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def make_updater(
    setup: Setup, output: Path | None, input_state: Path | None, callbacks: tuple = (), resume: bool = True
):
    torch.manual_seed(0)
    return DarkExperienceReplayModelUpdater(
        model=MLP(),
        loss_fn=torch.nn.CrossEntropyLoss(),
        optimizer=partial(torch.optim.SGD, lr=0.03, momentum=0.9),
        memory_size=setup.memory_size,
        batch_size=64,
        batch_memory_frac=0.5,
        alpha=0.5,
        beta=0.5,
        max_epochs=setup.epochs,
        input_state_folder=input_state,
        output_state_folder=output,
        **QUIET_CPU,
        seed=0,
        callbacks=callbacks,
        resume=resume and output is not None,
    )


class _Marks(pl.Callback):
    """Tells the parent, through a pipe, when training starts and ends."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        os.write(self.fd, FIT_START)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        os.write(self.fd, FIT_END)


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _trace(fd: int) -> None:
    """In the worker: report each stage of the save path through the pipe (instrumentation only)."""
    import retentive.state.resume as resume
    import retentive.updaters.persistence as persistence

    def traced(function: Any, begin: bytes, end: bytes) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            final = bool(kwargs.get("complete"))  # the checkpoint written once training is over
            os.write(fd, b"K" if final else begin)
            result = function(*args, **kwargs)
            os.write(fd, b"k" if final else end)
            return result

        return wrapper

    resume.write_checkpoint = traced(resume.write_checkpoint, b"C", b"c")  # called by ResumeSession
    persistence.save_state = traced(persistence.save_state, b"S", b"s")
    persistence.discard_checkpoints = traced(persistence.discard_checkpoints, b"R", b"r")


def fork_update(setup: Setup, output: Path) -> tuple[int, int]:
    """Fork a worker running the update; return (pid, read end of its progress pipe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        code = 0
        try:
            os.close(read_fd)
            _quiet()
            _trace(write_fd)
            make_updater(setup, output, setup.input_state, callbacks=(_Marks(write_fd),)).update(setup.chunk, task_id=1)
            os.write(write_fd, DONE)
        except BaseException:  # noqa: BLE001 - report any failure to the parent and exit
            code = 1
            with contextlib.suppress(OSError):
                os.write(write_fd, FAILED)
        os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _read_mark(fd: int, timeout: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no progress from the worker in {timeout} s")
    return os.read(fd, 1)


def _wait_exit(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def run_clean(setup: Setup, output: Path) -> dict[str, float]:
    """An uninterrupted update in a worker; returns its phase times (seconds)."""
    begun = time.perf_counter()
    pid, fd = fork_update(setup, output)
    marks = {}
    try:
        while DONE not in marks:
            mark = _read_mark(fd, 300)
            if mark in (FAILED, b""):
                raise RuntimeError("the worker failed")
            marks.setdefault(mark, time.perf_counter() - begun)
    finally:
        os.close(fd)
        code = _wait_exit(pid)
    if code != 0:
        raise RuntimeError(f"the clean update failed with exit code {code}")
    return {"start": marks[FIT_START], "train": marks[FIT_END] - marks[FIT_START], "save": marks[DONE] - marks[FIT_END]}


def states_equal(a: Path, b: Path) -> bool:
    """Same model weights, memory and counters (the manifest's timestamps may differ)."""
    sa, sb = load_state(a), load_state(b)

    def same(x: Any, y: Any) -> bool:
        if torch.is_tensor(x) or torch.is_tensor(y):
            return torch.is_tensor(x) and torch.is_tensor(y) and x.dtype == y.dtype and torch.equal(x, y)
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
        return x == y

    return same(sa.model, sb.model) and same(sa.memory, sb.memory) and same(sa.learner, sb.learner)


def check_output(setup: Setup, output: Path, reference: Path) -> str:
    """``absent``, ``complete`` (loads and equals the reference) or ``corrupt: why``."""
    if not output.exists():
        return "absent"
    try:
        load_state(output)
        make_updater(setup, None, output)  # restores model, memory and counters into a fresh updater
    except StateError as error:
        return f"corrupt: {error}"
    return "complete" if states_equal(output, reference) else "corrupt: differs from the uninterrupted run"


def leftovers(workdir: Path, output: Path) -> list[str]:
    return sorted(p.name for p in workdir.iterdir() if p.name.startswith(".retentive-") and output.name in p.name)


def prepare(workdir: Path, samples: int, epochs: int, memory_size: int, mnist: TensorChunk | None = None) -> Setup:
    train = split_mnist(mnist if mnist is not None else load_mnist("train"))
    g = torch.Generator().manual_seed(0)
    chunk0 = train[0].subset(torch.randperm(len(train[0]), generator=g)[:samples])
    chunk1 = train[1].subset(torch.randperm(len(train[1]), generator=g)[:samples])
    setup = Setup(workdir, workdir / "input", chunk1, epochs, memory_size)
    first = Setup(workdir, workdir / "input", chunk0, 1, memory_size)
    make_updater(first, setup.input_state, None, resume=False).update(chunk0, task_id=0)
    return setup


SWAP_STEPS = ("staged", "exchanged", "debris", "discarded", "renamed")


def _self_kill_after(step: str, signum: int = signal.SIGKILL) -> None:
    """In an in-place worker: send itself ``signum`` (SIGKILL by default) right after ``step`` of
    the swap (see SWAP_STEPS)."""
    import retentive.state.inplace as inplace

    def die() -> None:
        os.kill(os.getpid(), signum)

    def after(function: Any, name: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            if name == step:
                die()
            return result

        return wrapper

    inplace.write_staging = after(inplace.write_staging, "staged")
    inplace.exchange = after(inplace.exchange, "exchanged")
    inplace._discard = after(inplace._discard, "discarded")
    rename = os.rename

    def traced_rename(src: Any, dst: Any) -> None:
        rename(src, dst)
        name = Path(dst).name
        if step == "renamed" and name.startswith(inplace.PREVIOUS_PREFIX):
            die()
        if step == "debris" and "discard-" in name:
            die()

    inplace.os.rename = traced_rename  # type: ignore[attr-defined]


#: Marks of an in-place worker whose update raised KeyboardInterrupt: committed or not (its ``committed``).
INTERRUPTED, INTERRUPTED_COMMITTED = b"I", b"J"


def fork_inplace_update(
    setup: Setup, folder: Path, kill_after: str | None, signum: int = signal.SIGKILL
) -> tuple[int, int]:
    """Fork a worker running an in-place update of ``folder``; optionally it sends itself ``signum``
    at a swap step."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            _quiet()
            import retentive.updaters.persistence as persistence

            swap = persistence.swap_in

            def traced_swap(*args: Any, **kwargs: Any) -> Any:
                os.write(write_fd, b"S")
                result = swap(*args, **kwargs)
                os.write(write_fd, b"s")
                return result

            persistence.swap_in = traced_swap
            if kill_after is not None:
                _self_kill_after(kill_after, signum)
            make_updater(setup, folder, folder, callbacks=(_Marks(write_fd),), resume=False).update(
                setup.chunk, task_id=1
            )
            os.write(write_fd, DONE)
        except KeyboardInterrupt as interrupt:  # exit codes as `retentive update`'s: 0 committed, 130 not
            committed = getattr(interrupt, "committed", False)
            code = 0 if committed else 130
            os.write(write_fd, INTERRUPTED_COMMITTED if committed else INTERRUPTED)
        except BaseException:  # noqa: BLE001
            code = 1
            with contextlib.suppress(OSError):
                os.write(write_fd, FAILED)
        os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _run_to_end(pid: int, fd: int, begun: float) -> tuple[dict[bytes, float], int]:
    marks: dict[bytes, float] = {}
    try:
        while True:
            mark = _read_mark(fd, 300)
            if mark in (DONE, FAILED, b""):
                break
            marks.setdefault(mark, time.perf_counter() - begun)
        marks[mark] = time.perf_counter() - begun
    finally:
        os.close(fd)
        code = _wait_exit(pid)
    return marks, code


def run_inplace_kill_test(
    kills: int,
    seed: int,
    workdir: Path,
    samples: int = 2000,
    epochs: int = 2,
    memory_size: int = 2000,
    log: Any = None,
    mnist: TensorChunk | None = None,
) -> dict[str, Any]:
    """SIGKILL in-place updates during their save and swap; return the counts (``corrupt`` must be 0)."""
    from retentive.state.inplace import previous_path, rollback

    torch.set_num_threads(1)
    _quiet()
    rng = random.Random(seed)
    say = log or (lambda *a: None)
    setup = prepare(workdir, samples, epochs, memory_size, mnist)
    old_digest = tree_digest(setup.input_state)
    reference = workdir / "reference_inplace"
    shutil.copytree(setup.input_state, reference)
    begun = time.perf_counter()
    marks, code = _run_to_end(*fork_inplace_update(setup, reference, None), begun)
    if code != 0 or DONE not in marks:
        raise RuntimeError("the clean in-place update failed")
    window = marks[DONE] - marks[FIT_END]
    say(f"clean in-place update: save and swap {window:.3f} s")
    counts: dict[str, Any] = {
        "kills": kills,
        "random_moment": 0,
        "swap_step": {},
        "old_state": 0,
        "new_state": 0,
        "corrupt": 0,
        "rolled_back_identical": 0,
        "rollback_failed": 0,
        "no_previous_refused": 0,
        "problems": [],
    }
    for trial in range(kills):
        folder = workdir / f"inplace_{trial:03d}"
        shutil.copytree(setup.input_state, folder)
        step = None if trial % 2 == 0 else SWAP_STEPS[(trial // 2) % len(SWAP_STEPS)]
        pid, fd = fork_inplace_update(setup, folder, step)
        seen = b""
        try:
            if step is None:
                counts["random_moment"] += 1
                while FIT_END not in seen:
                    mark = _read_mark(fd, 300)
                    if mark in (FAILED, b""):
                        raise RuntimeError(f"trial {trial}: the worker failed before the kill")
                    seen += mark
                time.sleep(rng.uniform(0.0, window))
                os.kill(pid, signal.SIGKILL)
            else:
                counts["swap_step"][step] = counts["swap_step"].get(step, 0) + 1
        finally:
            code = _wait_exit(pid)
            while chunk := os.read(fd, 64):
                seen += chunk
            os.close(fd)
        where = step or f"random ({STAGES.get(seen[-1:], '?')})"
        try:
            load_state(folder)
            make_updater(setup, None, folder)
            is_new = states_equal(folder, reference)
            is_old = not is_new and tree_digest(folder) == old_digest
        except StateError as error:
            counts["corrupt"] += 1
            counts["problems"].append(f"trial {trial} ({where}): unloadable: {error}")
            continue
        if not (is_new or is_old):
            counts["corrupt"] += 1
            counts["problems"].append(f"trial {trial} ({where}): neither the old nor the new state")
            continue
        counts["new_state" if is_new else "old_state"] += 1
        try:
            if is_new:
                rollback(folder)
                if tree_digest(folder) == old_digest and not previous_path(folder).exists():
                    counts["rolled_back_identical"] += 1
                else:
                    counts["rollback_failed"] += 1
                    counts["problems"].append(f"trial {trial} ({where}): rollback did not restore the old state")
            else:
                try:
                    rollback(folder)
                    counts["rollback_failed"] += 1
                    counts["problems"].append(
                        f"trial {trial} ({where}): rollback of the untouched state did not refuse"
                    )
                except StateError:
                    counts["no_previous_refused"] += 1
        except StateError as error:
            counts["rollback_failed"] += 1
            counts["problems"].append(f"trial {trial} ({where}): rollback failed: {error}")
        say(f"trial {trial:2d}: killed at {where} -> {'new' if is_new else 'old'} state")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(previous_path(folder), ignore_errors=True)
    return counts


def run_inplace_signal_test(
    signum: int,
    workdir: Path,
    samples: int = 300,
    epochs: int = 1,
    memory_size: int = 300,
    log: Any = None,
    mnist: TensorChunk | None = None,
) -> dict[str, Any]:
    """Send ``signum`` (SIGINT or SIGTERM) to an in-place update right after each step of its swap.

    The commit (the exchange and the move of the old state to the rollback copy) holds both
    signals back: a signal after the staging step interrupts before the commit (the old state,
    no staging debris for SIGINT, which the update cleans up itself); after any later step the
    commit completes first (the new state with its rollback copy). With SIGINT the update raises a
    KeyboardInterrupt whose ``committed`` must say which; with SIGTERM the process ends by SIGTERM.
    """
    from retentive.state.inplace import previous_path, rollback

    torch.set_num_threads(1)
    _quiet()
    say = log or (lambda *a: None)
    setup = prepare(workdir, samples, epochs, memory_size, mnist)
    old_digest = tree_digest(setup.input_state)
    reference = workdir / "reference_inplace"
    shutil.copytree(setup.input_state, reference)
    marks, code = _run_to_end(*fork_inplace_update(setup, reference, None), time.perf_counter())
    if code != 0 or DONE not in marks:
        raise RuntimeError("the clean in-place update failed")
    counts: dict[str, Any] = {
        "signal": signal.Signals(signum).name,
        "old_state": [],
        "new_state": [],
        "corrupt": 0,
        "said_committed": 0,
        "said_not_committed": 0,
        "debris": 0,
        "rolled_back_identical": 0,
        "problems": [],
    }
    for step in SWAP_STEPS:
        folder = workdir / f"signal_{step}"
        shutil.copytree(setup.input_state, folder)
        shutil.copytree(setup.input_state, previous_path(folder))  # an older rollback copy: every step happens
        marks, code = _run_to_end(*fork_inplace_update(setup, folder, step, signum), time.perf_counter())
        try:
            make_updater(setup, None, folder)
            is_new = states_equal(folder, reference)
            is_old = not is_new and tree_digest(folder) == old_digest
        except StateError as error:
            is_new = is_old = False
            counts["problems"].append(f"{step}: unloadable: {error}")
        if not (is_new or is_old):
            counts["corrupt"] += 1
            counts["problems"].append(f"{step}: neither the old nor the new state")
            continue
        counts["new_state" if is_new else "old_state"].append(step)
        if signum == signal.SIGINT:
            said = INTERRUPTED_COMMITTED in marks
            if not said and INTERRUPTED not in marks:
                counts["problems"].append(f"{step}: no KeyboardInterrupt reached the caller (exit {code})")
            counts["said_committed" if said else "said_not_committed"] += 1
            if said != is_new:
                counts["problems"].append(
                    f"{step}: the interrupt said committed={said}, the folder holds the "
                    f"{'new' if is_new else 'old'} state"
                )
            debris = [
                p.name
                for p in workdir.iterdir()
                if p.name.startswith(".retentive-")
                and folder.name in p.name
                and not p.name.startswith(".retentive-previous-")
            ]
            if debris:
                counts["debris"] += 1
                counts["problems"].append(f"{step}: left {debris}")
        elif is_new and code != -signum:
            counts["problems"].append(
                f"{step}: the commit completed but the process ended with {code}, not by the signal"
            )
        if is_new:
            rollback(folder)
            if tree_digest(folder) == old_digest:
                counts["rolled_back_identical"] += 1
            else:
                counts["problems"].append(f"{step}: rollback did not restore the old state")
        say(f"{signal.Signals(signum).name} after {step}: {'new' if is_new else 'old'} state, exit {code}")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(previous_path(folder), ignore_errors=True)
    return counts


def run_kill_test(
    kills: int,
    seed: int,
    workdir: Path,
    samples: int = 2000,
    epochs: int = 4,
    memory_size: int = 2000,
    log: Any = None,
    mnist: TensorChunk | None = None,
) -> dict[str, Any]:
    """Run ``kills`` trials; return the counts (``corrupt`` must be 0). ``mnist``: the training set, if loaded."""
    torch.set_num_threads(1)
    _quiet()
    rng = random.Random(seed)
    say = log or (lambda *a: None)
    setup = prepare(workdir, samples, epochs, memory_size, mnist)
    input_digest = tree_digest(setup.input_state)
    reference = workdir / "reference"
    runs = [run_clean(setup, reference)]
    for extra in range(2):  # the kill windows are the shortest of three clean runs, so kills land inside
        runs.append(run_clean(setup, workdir / f"calibration_{extra}"))
        shutil.rmtree(workdir / f"calibration_{extra}")
    timing = {key: min(run[key] for run in runs) for key in runs[0]}
    say(f"clean update (shortest of 3): training {timing['train']:.2f} s, save {timing['save']:.3f} s")
    counts: dict[str, Any] = {
        "kills": kills,
        "during_training": 0,
        "during_save": 0,
        "output_absent": 0,
        "output_complete": 0,
        "finished_before_kill": 0,
        "corrupt": 0,
        "input_modified": 0,
        "resumed_identical": 0,
        "resume_failed": 0,
        "debris_after_complete": 0,
        "leftovers": 0,
        "resumed_from_epoch": {},
        "stage_at_kill": {},
        "problems": [],
        "timing_s": timing,
    }
    for trial in range(kills):
        output = workdir / f"out_{trial:03d}"
        phase = "training" if trial % 2 == 0 else "save"
        window = timing["train"] if phase == "training" else timing["save"]
        delay = rng.uniform(0.0, window)
        pid, fd = fork_update(setup, output)
        seen = b""
        try:
            while (FIT_START if phase == "training" else FIT_END) not in seen:
                mark = _read_mark(fd, 300)
                if mark in (FAILED, b""):
                    raise RuntimeError(f"trial {trial}: the worker failed before the kill")
                seen += mark
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
        finally:
            _wait_exit(pid)
            while chunk := os.read(fd, 64):  # every mark sent before it died (EOF once it is gone)
                seen += chunk
            os.close(fd)
        stage = STAGES.get(seen[-1:], "?")
        counts["during_" + ("training" if phase == "training" else "save")] += 1
        counts["stage_at_kill"][stage] = counts["stage_at_kill"].get(stage, 0) + 1
        counts["finished_before_kill"] += int(DONE in seen)
        if tree_digest(setup.input_state) != input_digest:
            counts["input_modified"] += 1
            counts["problems"].append(f"trial {trial}: the input folder changed")
        outcome = check_output(setup, output, reference)
        if outcome.startswith("corrupt"):
            counts["corrupt"] += 1
            counts["problems"].append(f"trial {trial} ({phase}, {delay:.3f} s): {outcome}")
            continue
        counts["output_" + outcome] += 1
        if outcome == "absent":  # the kill struck before the output was in place: resume the update
            epochs_kept = sorted(p.name for p in checkpoint_root(output).glob("epoch-*"))
            start = epochs_kept[-1] if epochs_kept else "none"
            counts["resumed_from_epoch"][start] = counts["resumed_from_epoch"].get(start, 0) + 1
            try:
                _resume(setup, output)
            except RuntimeError as error:
                counts["resume_failed"] += 1
                counts["problems"].append(f"trial {trial}: resume failed: {error}")
                continue
            if check_output(setup, output, reference) == "complete":
                counts["resumed_identical"] += 1
            else:
                counts["corrupt"] += 1
                counts["problems"].append(f"trial {trial}: the resumed output differs from the uninterrupted run")
        elif leftovers(workdir, output):  # the kill struck after the save, while checkpoints were removed
            counts["debris_after_complete"] += 1
            remove_leftovers(workdir)
        if leftovers(workdir, output):
            counts["leftovers"] += 1
            counts["problems"].append(f"trial {trial}: left {leftovers(workdir, output)}")
        say(f"trial {trial:2d}: kill {delay:.3f} s into {phase:<8} (stage: {stage}) -> {outcome}")
    return counts


def _resume(setup: Setup, output: Path) -> None:
    pid, fd = fork_update(setup, output)
    try:
        while True:
            mark = _read_mark(fd, 300)
            if mark in (DONE, FAILED, b""):
                break
    finally:
        os.close(fd)
        code = _wait_exit(pid)
    if code != 0 or mark != DONE:
        raise RuntimeError(f"the resumed update exited with code {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=2000, help="training samples in the killed update [2000]")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the killed update [4]")
    parser.add_argument("--memory-size", type=int, default=2000, help="replay memory (makes the save longer) [2000]")
    parser.add_argument("--json", type=Path, default=None, help="also write the counts here")
    parser.add_argument("--in-place", action="store_true", help="kill in-place updates during their save and swap")
    parser.add_argument(
        "--signal",
        choices=("SIGINT", "SIGTERM"),
        default=None,
        help="instead: send this signal to an in-place update after each step of its swap",
    )
    parser.add_argument("--promote", action="store_true", help="kill the promote of a model home's candidate")
    args = parser.parse_args(argv)
    begun = time.perf_counter()
    if args.promote:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from promote_kill import run_promote_kill_test

        with tempfile.TemporaryDirectory(prefix="retentive-kill-") as workdir:
            counts = run_promote_kill_test(args.kills, args.seed, Path(workdir))
        print(json.dumps(counts, indent=2))
        return 0 if not counts["problems"] else 1
    with tempfile.TemporaryDirectory(prefix="retentive-kill-") as workdir:
        if args.signal is not None:
            counts = run_inplace_signal_test(
                getattr(signal, args.signal),
                Path(workdir),
                args.samples,
                args.epochs,
                args.memory_size,
                log=lambda *a: print(*a, flush=True),
            )
            print(json.dumps(counts, indent=2))
            return 0 if not (counts["corrupt"] or counts["problems"]) else 1
        if args.in_place:
            counts = run_inplace_kill_test(
                args.kills,
                args.seed,
                Path(workdir),
                args.samples,
                args.epochs,
                args.memory_size,
                log=lambda *a: print(*a, flush=True),
            )
            counts["seconds"] = round(time.perf_counter() - begun, 1)
            print(json.dumps(counts, indent=2))
            if args.json is not None:
                args.json.write_text(json.dumps(counts, indent=2))
            return 0 if not (counts["corrupt"] or counts["rollback_failed"]) else 1
        counts = run_kill_test(
            args.kills,
            args.seed,
            Path(workdir),
            args.samples,
            args.epochs,
            args.memory_size,
            log=lambda *a: print(*a, flush=True),
        )
    counts["seconds"] = round(time.perf_counter() - begun, 1)
    print(json.dumps(counts, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(counts, indent=2))
    ok = not (counts["corrupt"] or counts["input_modified"] or counts["resume_failed"] or counts["leftovers"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
