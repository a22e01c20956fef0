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
"""

from __future__ import annotations

import argparse
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

from retentive import DarkExperienceReplayModelUpdater, StateError
from retentive.data import TensorChunk, load_mnist, split_mnist
from retentive.state.housekeeping import remove_leftovers
from retentive.models import MLP
from retentive.state.resume import checkpoint_root
from retentive.state import load_state

FIT_START, FIT_END, DONE, FAILED = b"F", b"E", b"D", b"X"
#: What the worker was doing when it died, by the last mark it sent.
STAGES = {b"F": "training", b"c": "training", b"C": "writing an epoch checkpoint", b"E": "end-of-training hooks",
          b"K": "writing the final checkpoint", b"k": "between checkpoint and save", b"S": "writing the output",
          b"s": "after the save", b"R": "removing the checkpoints", b"r": "finished", b"D": "finished"}


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


def make_updater(setup: Setup, output: Path | None, input_state: Path | None, callbacks: tuple = (), resume: bool = True):
    torch.manual_seed(0)
    return DarkExperienceReplayModelUpdater(
        model=MLP(), loss_fn=torch.nn.CrossEntropyLoss(), optimizer=partial(torch.optim.SGD, lr=0.03, momentum=0.9),
        memory_size=setup.memory_size, batch_size=64, batch_memory_frac=0.5, alpha=0.5, beta=0.5,
        max_epochs=setup.epochs, input_state_folder=input_state, output_state_folder=output,
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, seed=0, callbacks=callbacks,
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
    import retentive.updaters.base as base

    def traced(function: Any, begin: bytes, end: bytes) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            final = bool(kwargs.get("complete"))  # the checkpoint written once training is over
            os.write(fd, b"K" if final else begin)
            result = function(*args, **kwargs)
            os.write(fd, b"k" if final else end)
            return result
        return wrapper

    resume.write_checkpoint = traced(resume.write_checkpoint, b"C", b"c")  # called by ResumeSession
    base.save_state = traced(base.save_state, b"S", b"s")
    base.discard_checkpoints = traced(base.discard_checkpoints, b"R", b"r")


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
            try:
                os.write(write_fd, FAILED)
            except OSError:
                pass
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


def run_kill_test(kills: int, seed: int, workdir: Path, samples: int = 2000, epochs: int = 4,
                  memory_size: int = 2000, log: Any = None, mnist: TensorChunk | None = None) -> dict[str, Any]:
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
    counts: dict[str, Any] = {"kills": kills, "during_training": 0, "during_save": 0, "output_absent": 0,
                              "output_complete": 0, "finished_before_kill": 0, "corrupt": 0, "input_modified": 0,
                              "resumed_identical": 0, "resume_failed": 0, "debris_after_complete": 0, "leftovers": 0,
                              "resumed_from_epoch": {}, "stage_at_kill": {}, "problems": [], "timing_s": timing}
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
    args = parser.parse_args(argv)
    begun = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="retentive-kill-") as workdir:
        counts = run_kill_test(args.kills, args.seed, Path(workdir), args.samples, args.epochs, args.memory_size,
                               log=lambda *a: print(*a, flush=True))
    counts["seconds"] = round(time.perf_counter() - begun, 1)
    print(json.dumps(counts, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(counts, indent=2))
    ok = not (counts["corrupt"] or counts["input_modified"] or counts["resume_failed"] or counts["leftovers"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
