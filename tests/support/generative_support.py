"""Shared by the generative replay tests: two small Seq-MNIST chunks and a small DGR updater."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from retentive import GenerativeReplayModelUpdater, VariationalAutoencoder
from retentive.data import TensorChunk, load_mnist, split_mnist
from retentive.models import MLP

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)


def two_chunks() -> list[TensorChunk]:
    """The first 120 samples of Seq-MNIST's first two tasks."""
    return [c.subset(torch.arange(120)) for c in split_mnist(load_mnist("train"))[:2]]


def make(tmp: Path, name: str, previous: Path | None = None, **kwargs: Any) -> GenerativeReplayModelUpdater:
    """DGR on an MLP (32 hidden) with a small VAE (latent 8, hidden 64), 12 new samples a step."""
    torch.manual_seed(0)
    generator = VariationalAutoencoder((1, 28, 28), latent_dim=8, hidden=(64,))
    return GenerativeReplayModelUpdater(
        MLP(hidden=(32,)),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        generator=generator,
        batch_size=12,
        input_state_folder=previous,
        output_state_folder=tmp / name,
        **{**QUIET, **kwargs},
    )
