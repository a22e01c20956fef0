"""A real 2-process DDP run on CPU (gloo) for tests/ddp/test_selection_policies_ddp.py, which starts it.

Lightning's ``strategy="ddp"`` runs this script again for rank 1. For each memory policy, two
DER++ updates (chunks 0 and 1, resumed through a state folder); after each, every rank dumps its
memory replica (storage and policy state) to ``OUT/<policy>_<update>.rank<r>.pt``.

    python tests/support/selection_ddp_worker.py --out DIR
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parents[1]),
]  # support/, tests/ (conftest)

POLICIES = ("class_balanced_reservoir", "ring_buffer", "herding", "k_center", "gradient_diversity", "forgetting")
MEMORY = 40


def make_updater(policy: str, input_state: Path | None, output_state: Path):
    from retentive import DarkExperienceReplayModelUpdater
    from retentive.memory import policy_from_name
    from retentive.models import MLP

    torch.manual_seed(0)
    return DarkExperienceReplayModelUpdater(
        MLP(hidden=(64,)),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.05),
        memory_size=MEMORY,
        batch_size=32,
        batch_memory_frac=0.5,
        memory_policy=policy_from_name(policy),
        input_state_folder=input_state,
        output_state_folder=output_state,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_progress_bar=False,
        seed=0,
        max_epochs=1,
    )


def main() -> None:
    from conftest import small_split

    from retentive.data import load_mnist

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = small_split(load_mnist("train"), 301)[:2]  # odd sizes: uneven shards
    for policy in POLICIES:
        previous = None
        for update, chunk in enumerate(data):
            folder = args.out / f"{policy}_{update}"
            updater = make_updater(policy, previous, folder)
            updater.update(chunk, task_id=update)
            rank = (
                torch.distributed.get_rank()
                if torch.distributed.is_initialized()
                else int(os.environ.get("LOCAL_RANK", 0))
            )
            torch.save(updater.memory.state_dict(), args.out / f"{policy}_{update}.rank{rank}.pt")
            previous = folder


if __name__ == "__main__":
    main()
