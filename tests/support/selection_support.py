"""Shared by the selection end-to-end test and its fresh-process worker: one small DER++ setup."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from retentive import DarkExperienceReplayModelUpdater
from retentive.data import TensorChunk, load_mnist, split_mnist
from retentive.memory import policy_from_name
from retentive.models import MLP

POLICY_NAMES = (
    "reservoir",
    "class_balanced_reservoir",
    "ring_buffer",
    "herding",
    "k_center",
    "gradient_diversity",
    "forgetting",
)
MEMORY = 24


def chunks(per_chunk: int = 120) -> list[TensorChunk]:
    g = torch.Generator().manual_seed(0)
    out = []
    for c in split_mnist(load_mnist("train"))[:2]:
        out.append(c.subset(torch.randperm(len(c), generator=g)[:per_chunk]))
    return out


def build(name: str, input_state: Path | None, output_state: Path | None, **kwargs):
    torch.manual_seed(0)
    updater = DarkExperienceReplayModelUpdater
    return updater(
        MLP(),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.05),
        memory_size=MEMORY,
        batch_size=16,
        memory_batch_size=8,
        memory_policy=policy_from_name(name),
        input_state_folder=input_state,
        output_state_folder=output_state,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        seed=3,
        max_epochs=1,
        **kwargs,
    )
