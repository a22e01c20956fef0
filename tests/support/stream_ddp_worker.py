"""A 2-process DDP update on a stream, for tests/ddp/test_stream_ddp.py (started in a subprocess).

Lightning's ``strategy="ddp"`` runs this script again for rank 1. The stream holds 201 real MNIST
samples (odd: rank 1 needs one repeated to even the steps) and declares no length, so the ranks
learn the epoch's end from the stream itself. Each rank dumps its model, its memory replica and the
pixel sums of the samples it trained on in the first epoch to ``OUT/stream.rank<r>.pt``.

    python tests/support/stream_ddp_worker.py --out DIR
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import IterableDataset

SAMPLES = 201


class Stream(IterableDataset):
    """The first ``SAMPLES`` MNIST test images, in order, with no declared length."""

    def __init__(self) -> None:
        from retentive.data import load_mnist

        self.chunk = load_mnist("test").subset(torch.arange(SAMPLES))

    def __iter__(self):
        for index in range(SAMPLES):
            yield self.chunk[index]


class Record(pl.Callback):
    """The pixel sums of the first epoch's samples on this rank."""

    def __init__(self) -> None:
        self.sums: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, module, batch, index) -> None:
        if trainer.current_epoch == 0:
            self.sums.append(batch[0].flatten(1).sum(1).cpu())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from retentive.updaters import ExperienceReplayModelUpdater

    torch.manual_seed(0)
    record = Record()
    updater = ExperienceReplayModelUpdater(
        model=nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), loss_fn=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.SGD(p, lr=0.05), memory_size=32, batch_size=16,
        output_state_folder=args.out / "state", accelerator="cpu", devices=2, strategy="ddp", logger=False,
        enable_progress_bar=False, max_epochs=2, seed=0, callbacks=[record],
    )  # fmt: skip
    updater.update(Stream())
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else int(os.environ.get("LOCAL_RANK", 0))
    payload = {
        "model": {k: v.clone() for k, v in updater.model.state_dict().items()},
        "memory": updater.memory.state_dict(),
        "sums": torch.cat(record.sums),
        "tasks_seen": dict(updater.tasks_seen),
    }
    torch.save(payload, args.out / f"stream.rank{rank}.pt")


if __name__ == "__main__":
    main()
