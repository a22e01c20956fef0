"""One node of a two-node DDP run (``num_nodes=2, devices=1``), started by scripts/two_nodes.py under torchrun.

tests/ddp/test_multinode.py launches this on two "nodes" of this machine. Each process runs two
updates of real MNIST (chunk 0 from scratch into ``OUT/mn0``, chunk 1 from there into ``OUT/mn1``)
and dumps, after each, its model, learner state and memory replica to ``OUT/<name>.rank<r>.pt``
(``r`` the global rank), with what it printed to ``OUT/<name>.rank<r>.log`` (nothing is expected
from rank 1). ``--phase crash`` runs the second update with ``resume=True`` over two epochs and
crashes it at the start of the second on every rank (rank 0 has written the first epoch's
checkpoint); ``--phase resume`` runs it again and continues from that checkpoint.

    python -m torch.distributed.run --nnodes 2 ... tests/support/multinode_worker.py --out SHARED [--phase P]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from ddp_worker import chunks, dump, make_updater, record_offers  # noqa: E402


class CrashAtSecondEpoch(pl.Callback):
    """Every rank fails at the start of epoch 1, after rank 0 wrote epoch 0's checkpoint."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash of both nodes at the start of epoch 1")


def node_updater(input_state: Path | None, output_state: Path, **extra):
    """The DER updater of tests/ddp/test_ddp_update.py, on one device of each of two nodes."""
    return make_updater(input_state, output_state, devices=1, num_nodes=2, strategy="ddp", **extra)


def run_update(out: Path, name: str, input_state: Path | None, chunk, task: int, **extra) -> None:
    """One update; what this rank printed goes to ``<name>.rank<r>.log``, its replica to ``<name>.rank<r>.pt``."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        updater = node_updater(input_state, out / name, **extra)
        seen = record_offers(updater)
        returned = updater.update(chunk, task_id=task)
    rank = torch.distributed.get_rank()
    (out / f"{name}.rank{rank}.log").write_text(printed.getvalue(), encoding="utf-8")
    dump(out, name, updater, seen, returned)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--phase", choices=("update", "crash", "resume"), default="update")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = chunks()
    if args.phase == "update":
        run_update(args.out, "mn0", None, data[0], 0)
        run_update(args.out, "mn1", args.out / "mn0", data[1], 1)
        return
    resume = dict(resume=True, max_epochs=2)
    if args.phase == "crash":
        updater = node_updater(args.out / "mn1", args.out / "mn2", callbacks=[CrashAtSecondEpoch()], **resume)
        updater.update(data[2], task_id=2)  # raises on every rank
        return
    run_update(args.out, "mn2", args.out / "mn1", data[2], 2, **resume)
    print(f"rank {os.environ['RANK']} resumed", flush=True)


if __name__ == "__main__":
    main()
