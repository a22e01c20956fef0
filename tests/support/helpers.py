"""Helpers for building updaters in tests with quiet, fast defaults."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

QUIET: dict[str, Any] = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)


def sgd(lr: float = 0.05):
    return partial(torch.optim.SGD, lr=lr)
