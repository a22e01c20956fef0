"""A real 2-process DDP run on CPU (gloo) for tests/ddp/test_ddp_update.py, which starts it in a subprocess.

Lightning's ``strategy="ddp"`` runs this script again for rank 1, so everything below runs on
both ranks. Each rank records what it offered to the memory (a fingerprint of each input, its
label and logits) and, after each update, dumps its model, learner state and memory replica to
``OUT/<name>.rank<r>.pt`` for the test to compare.

    python tests/support/ddp_worker.py --out DIR --single-state FOLDER_WRITTEN_BY_ONE_PROCESS

Updates: ``ddp0`` (chunk 0, 999 samples: uneven last batches) from scratch; ``ddp1`` (chunk 1)
resuming ``ddp0``; ``from1`` (chunk 1) resuming the single-process folder, in bf16-mixed with
an EMA refresh of stored logits and uint8 inputs; ``super0`` and ``super1`` (chunks 0 and 1):
Super-ER — CLS-ER's randomly updated EMA teachers, shrink-and-perturb's noise, POD's stored
features — on a model with dropout, whose random draws depend on each rank's batch size.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parents[1]),
]  # support/, tests/ (conftest)

CHUNK_SIZES = (999, 1000, 1000)
FINGERPRINT_SEED = 1234


def build_model() -> nn.Module:
    """A small MLP with batch norm, whose running statistics each rank updates on its own batch."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))


def build_dropout_model() -> nn.Module:
    """Batch norm and dropout: each rank draws dropout masks for its own (uneven) batches."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10)
    )


def fingerprints(inputs: Tensor) -> Tensor:
    """An exact integer id per MNIST image (k/255 pixels), to tell which rank offered a sample."""
    weights = torch.randint(0, 2**20, (784,), generator=torch.Generator().manual_seed(FINGERPRINT_SEED))
    return (inputs.detach().cpu().reshape(inputs.shape[0], -1).double() * 255).round().long() @ weights


def chunks() -> list:
    from conftest import small_split

    from retentive.data import load_mnist

    train = small_split(load_mnist("train"), 1000)
    return [c.subset(torch.arange(n)) for c, n in zip(train, CHUNK_SIZES)]


def make_updater(input_state: Path | None, output_state: Path | None, devices: int, **extra: Any):
    from retentive import DarkExperienceReplayModelUpdater

    torch.manual_seed(0)
    return DarkExperienceReplayModelUpdater(
        build_model(),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.05),
        memory_size=500,
        batch_size=64,
        batch_memory_frac=0.5,
        alpha=0.5,
        beta=0.5,
        input_state_folder=input_state,
        output_state_folder=output_state,
        accelerator="cpu",
        devices=devices,
        logger=False,
        enable_progress_bar=False,
        seed=0,
        **{"strategy": "ddp" if devices > 1 else "auto", "max_epochs": 1, **extra},
    )


def make_super_updater(input_state: Path | None, output_state: Path):
    from retentive import SuperExperienceReplayModelUpdater

    torch.manual_seed(0)
    return SuperExperienceReplayModelUpdater(
        build_dropout_model(),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.05),
        memory_size=300,
        batch_size=64,
        batch_memory_frac=0.5,
        feature_layers=["3"],
        input_state_folder=input_state,
        output_state_folder=output_state,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_progress_bar=False,
        max_epochs=1,
        seed=0,
    )


def record_offers(updater) -> dict[str, list[Tensor]]:
    """Wrap the learner's insert to record each sample this rank offers to the memory."""
    seen: dict[str, list[Tensor]] = {"fingerprints": [], "targets": [], "logits": []}
    store = updater.learner._store

    def recording_store(ctx):
        seen["fingerprints"].append(fingerprints(ctx.inputs))
        seen["targets"].append(ctx.targets.cpu())
        seen["logits"].append(ctx.outputs.detach().float().cpu())
        return store(ctx)

    updater.learner._store = recording_store
    return seen


def rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else int(os.environ.get("LOCAL_RANK", 0))


def dump(out: Path, name: str, updater, seen: dict[str, list[Tensor]] | None, returned: nn.Module | None) -> None:
    payload = {
        "model": {k: v.clone() for k, v in updater.model.state_dict().items()},
        "learner": updater.learner.extra_state(),
        "memory": updater.memory.state_dict(),
        "returned_is_model": returned is updater.model,
        "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
    }
    if seen is not None:
        payload["seen"] = {k: torch.cat(v) for k, v in seen.items()}
    torch.save(payload, out / f"{name}.rank{rank()}.pt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--single-state", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = chunks()

    updater = make_updater(None, args.out / "ddp0", devices=2)
    seen = record_offers(updater)
    dump(args.out, "ddp0", updater, seen, updater.update(data[0], task_id=0))

    updater = make_updater(args.out / "ddp0", args.out / "ddp1", devices=2)
    seen = record_offers(updater)
    dump(args.out, "ddp1", updater, seen, updater.update(data[1], task_id=1))

    extra = dict(precision="bf16-mixed", ema_memory_update_gamma=0.9, memory_input_dtype="uint8")
    updater = make_updater(args.single_state, args.out / "from1", devices=2, **extra)
    dump(args.out, "from1_loaded", updater, None, None)
    dump(args.out, "from1", updater, None, updater.update(data[1], task_id=1))

    updater = make_super_updater(None, args.out / "super0")
    dump(args.out, "super0", updater, None, updater.update(data[0], task_id=0))
    updater = make_super_updater(args.out / "super0", args.out / "super1")
    dump(args.out, "super1", updater, None, updater.update(data[1], task_id=1))


if __name__ == "__main__":
    main()
