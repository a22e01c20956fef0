"""One architecture update in its own process: `python tests/support/arch_worker.py METHOD TASK INPUT|- OUTPUT`.

Trains ``METHOD`` (packnet, pnn, pnn-cnn) on a small real Split-MNIST chunk of task ``TASK``,
resuming from ``INPUT`` (``-`` for the first task), and writes the state folder ``OUTPUT``. The
optimizer has momentum and weight decay on purpose: frozen weights must stay bit-identical even
under an optimizer that moves weights whose gradient is zero.
"""

from __future__ import annotations

import sys
from functools import partial

import torch

from retentive import PackNetModelUpdater, ProgressiveNetworkModelUpdater
from retentive.data import load_mnist, split_mnist
from retentive.models import MultiHeadClassifier, PackedNetwork, ProgressiveNetwork

GROUPS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def build_model(method: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if method == "packnet":
        return PackedNetwork(MultiHeadClassifier.mlp(GROUPS, hidden=(32, 32), num_classes=10))
    if method == "pnn":
        return ProgressiveNetwork("mlp", hidden=(32, 32), class_groups=GROUPS, num_classes=10)
    return ProgressiveNetwork("cnn", hidden=(4, 8), class_groups=GROUPS, num_classes=10)


def main(method: str, task: int, input_state: str, output_state: str) -> None:
    torch.set_num_threads(1)
    chunk = split_mnist(load_mnist("train"), with_task_ids=True)[task].subset(torch.arange(200))
    common = dict(
        batch_size=20,
        input_state_folder=None if input_state == "-" else input_state,
        output_state_folder=output_state,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        max_epochs=1,
        seed=task,
    )
    optimizer = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)
    loss = torch.nn.CrossEntropyLoss()
    model = build_model(method)
    if method == "packnet":
        updater = PackNetModelUpdater(model, loss, optimizer, prune_ratio=0.5, post_prune_epochs=1, **common)
    else:
        updater = ProgressiveNetworkModelUpdater(model, loss, optimizer, **common)
    updater.update(chunk, task_id=task)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
