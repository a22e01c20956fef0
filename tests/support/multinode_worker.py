"""One node of a two-node DDP run (``num_nodes=2, devices=1``), started by scripts/two_nodes.py under torchrun.

tests/ddp/test_multinode.py launches this on two "nodes" of this machine. ``--phase update``
runs three updates of real MNIST: chunk 0 from scratch into ``OUT/mn0``, chunk 1 from there into
``OUT/mn1``, and chunk 2 into ``OUT/mn2`` with ``resume=True``, crashed on both nodes at its third
epoch and run again, resuming from rank 0's checkpoint. After each completed update every process
dumps its model, learner state and memory replica to ``OUT/<name>.rank<r>.pt`` (``r`` the global
rank), with what it printed to ``OUT/<name>.rank<r>.log`` (nothing is expected).
``--phase local`` gives each node its own state folders (``$RETENTIVE_NODE_DIR``, as two machines
without a shared filesystem) and records what the updates say to ``OUT/local.rank<r>.json``.

    python -m torch.distributed.run --nnodes 2 ... tests/support/multinode_worker.py --out SHARED [--phase P]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from ddp_worker import chunks, dump, make_updater, record_offers  # noqa: E402


class CrashAtEpoch(pl.Callback):
    """Every rank fails at the start of epoch ``epoch``, after rank 0 wrote the checkpoint before it."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated crash of both nodes at the start of epoch {self.epoch}")


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


def crash_and_resume(out: Path, chunk) -> None:
    """``mn2``: a three-epoch update with ``resume=True`` crashes at epoch 2 on both nodes, then
    continues from rank 0's checkpoint of epoch 1, which each rank says it resumes from."""
    resume = dict(resume=True, max_epochs=3)
    crashing = node_updater(out / "mn1", out / "mn2", callbacks=[CrashAtEpoch(2)], **resume)
    try:
        crashing.update(chunk, task_id=2)
    except RuntimeError as error:
        assert "simulated crash" in str(error), error
    else:
        raise AssertionError("the update did not crash")
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    logging.getLogger("retentive.state.resume").addHandler(handler)
    logging.getLogger("retentive.state.resume").setLevel(logging.INFO)
    run_update(out, "mn2", out / "mn1", chunk, 2, **resume)
    (out / f"resume.rank{torch.distributed.get_rank()}.log").write_text(records.getvalue(), encoding="utf-8")


def local_folders(out: Path, data) -> None:
    """Node-local state folders (each node's own ``$RETENTIVE_NODE_DIR``): what each check says."""
    node_dir = Path(os.environ["RETENTIVE_NODE_DIR"])
    said = {}
    try:  # rank 0 writes into its node's folder; rank 1 does not see it there
        node_updater(out / "mn0", node_dir / "local").update(data[1], task_id=1)
    except Exception as error:
        said["visible"] = f"{type(error).__name__}: {error}"
    try:  # each node reads its own, different copy of "the" input state
        node_updater(node_dir / "input", node_dir / "from_input").update(data[1], task_id=1)
    except Exception as error:
        said["start"] = f"{type(error).__name__}: {error}"
    said["wrote"] = sorted(p.name for p in node_dir.iterdir())
    (out / f"local.rank{torch.distributed.get_rank()}.json").write_text(json.dumps(said), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--phase", choices=("update", "local"), default="update")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = chunks()
    if args.phase == "local":
        local_folders(args.out, data)
        return
    run_update(args.out, "mn0", None, data[0], 0)
    run_update(args.out, "mn1", args.out / "mn0", data[1], 1)
    crash_and_resume(args.out, data[2])


if __name__ == "__main__":
    main()
