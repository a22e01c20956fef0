"""Kill test of a gated update: SIGKILL at any moment of gate-and-promote leaves exactly the old or
the new champion.

A local model home serves version A (an ER update on a first MNIST chunk). Each trial forks a
worker that runs the next gated update in place on the home (read A, hold out 20 % of the chunk,
train, judge the candidate against A, then write it and promote it, or keep it as the challenger)
and SIGKILLs it at a random moment: half the trials uniform over a clean worker's whole run (fork
to exit), half uniform over its gate-and-promote stage alone (as long as a clean worker's, from the
moment the worker starts judging: it tells the parent through a pipe). Two
chunks are tried in turn: a good one (the gate promotes) and one with its labels permuted (the gate
rejects). After each kill the home must read and verify; its current version must be A or, for the
good chunk only, the new candidate, whole (fetched, every checksum checked) and with A as its
previous; a harmful candidate must never serve, and a challenger, if recorded, must verify. The
home is put back to A (a rollback) after each promotion. Run (about a minute on 2 cores):

    python benchmarks/gate_kill.py --kills 20 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import random
import select
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from retentive.data import TensorChunk, load_mnist
from retentive.gates import Gate, GateRejected
from retentive.state.home import ModelHome

JUDGING, DONE = b"J", b"D"
HOLDOUT = 0.2


def _pipeline() -> Any:
    """benchmarks/gate_cost.py: the pipeline's chunks and updater."""
    spec = importlib.util.spec_from_file_location("gate_cost", Path(__file__).resolve().parent / "gate_cost.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _update(bench: Any, home: ModelHome, chunk: TensorChunk, marks: int | None = None) -> str:
    """One gated update in place on ``home``; its decision. ``marks``: a pipe told when judging starts."""
    updater = bench.make_updater(
        0, batch_size=32, max_epochs=2, input_state_folder=home.location, output_state_folder=home.location
    )
    if marks is not None:
        from retentive.gates import transaction

        judge = transaction.GatedUpdate.judge

        def traced(self: Any, *args: Any) -> Any:
            os.write(marks, JUDGING)
            return judge(self, *args)

        transaction.GatedUpdate.judge = traced  # type: ignore[method-assign]
    try:
        updater.update(chunk, gate=Gate(bench.CRITERIA, holdout=HOLDOUT))
        return "promote"
    except GateRejected:
        return "reject"


def _fork(bench: Any, home: ModelHome, chunk: TensorChunk) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        code = 1
        try:
            os.close(read_fd)
            warnings.filterwarnings("ignore")
            logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
            _update(bench, home, chunk, write_fd)
            os.write(write_fd, DONE)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _marks(fd: int) -> bytes:
    seen = b""
    while select.select([fd], [], [], 0)[0]:
        block = os.read(fd, 64)
        if not block:
            break
        seen += block
    os.close(fd)
    return seen


def _clean_run(bench: Any, home: ModelHome, chunk: TensorChunk) -> tuple[float, float]:
    """A worker's uninterrupted run: (seconds to the start of judging, seconds to its exit)."""
    begun = time.perf_counter()
    pid, fd = _fork(bench, home, chunk)
    select.select([fd], [], [], 600)
    judging = time.perf_counter() - begun
    os.waitpid(pid, 0)
    total = time.perf_counter() - begun
    if _marks(fd) != JUDGING + DONE:
        raise RuntimeError("the clean worker did not finish")
    return judging, total


def _check(home: ModelHome, champion: str, harmful: bool, scratch: Path) -> tuple[str | None, str]:
    try:
        current = home.current()
        if current is None:
            return "the home has no current version", ""
        if current.id != champion and (harmful or home.history()[1].id != champion):
            shown = ", ".join(f"{v.role} {v.id}" for v in home.history())
            return f"current is {current.id}, neither the champion nor a good candidate built on it ({shown})", ""
        home.fetch(scratch / "current")  # whole: every checksum verified
        challenger = home.challenger()
        if challenger is not None:
            home.fetch(scratch / "challenger", challenger)
    except Exception as error:  # any failure to read the home is a corrupt outcome
        return f"{type(error).__name__}: {error}", ""
    return None, "old" if current.id == champion else "new"


def _id(version: Any) -> str | None:
    return None if version is None else str(version.id)


def run_gate_kill_test(kills: int, seed: int, workdir: Path, per_chunk: int = 1000) -> dict[str, Any]:
    """``kills`` trials (see the module docstring); returns the counts, ``problems`` listing any violation."""
    bench = _pipeline()
    rng = random.Random(seed)
    first, good, _, harmful = bench.pipeline_chunks(load_mnist("train"), chunks=4, per_chunk=per_chunk, harmful=3)
    home = ModelHome(workdir / "home").create()
    first_update = bench.make_updater(0, batch_size=32, max_epochs=2, output_state_folder=home.location)
    first_update.update(first, gate=Gate(bench.CRITERIA, holdout=HOLDOUT))  # its held-out share kept for later gates
    champion = home.current()
    assert champion is not None
    windows = {}
    for name, chunk in (("good", good), ("harmful", harmful)):
        windows[name] = _clean_run(bench, home, chunk)
        if home.current().id != champion.id:  # type: ignore[union-attr]
            home.rollback()
    counts: dict[str, Any] = {"problems": [], "outcomes": {}, "windows_s": windows}
    for trial in range(kills):
        name, chunk = ("good", good) if trial % 2 == 0 else ("harmful", harmful)
        judging, total = windows[name]
        stage = "gate-and-promote" if (trial // 2) % 2 else "anywhere"
        kept_before = home.challenger()
        pid, fd = _fork(bench, home, chunk)
        if stage == "gate-and-promote":  # timed from the worker's own start of judging, whatever the load
            select.select([fd], [], [], 600)
            time.sleep(rng.uniform(0.0, total - judging))
        else:
            time.sleep(rng.uniform(0.0, total))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        seen = _marks(fd)
        at = "finished" if DONE in seen else ("judging or writing" if JUDGING in seen else "training")
        problem, outcome = _check(home, champion.id, name == "harmful", workdir / f"check{trial}")
        if problem:
            counts["problems"].append(f"trial {trial} ({name}, {stage}, killed while {at}): {problem}")
            continue
        if _id(home.challenger()) != _id(kept_before):
            outcome += ", new challenger"
        counts["outcomes"].setdefault(f"{name}: killed while {at}", []).append(outcome)
        if outcome == "new":
            home.rollback()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="retentive-gate-kill-") as workdir:
        counts = run_gate_kill_test(args.kills, args.seed, Path(workdir))
    print(json.dumps(counts, indent=2))
    return 0 if not counts["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
