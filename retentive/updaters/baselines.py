"""Baselines: fine-tuning, the lower bound of every continual-learning comparison."""

from __future__ import annotations

from typing import Any

from retentive.updaters.base import ModelUpdater


class FineTuningModelUpdater(ModelUpdater):
    """Plain training on each chunk: no memory, no extra loss (it forgets; that is the point).

    Args:
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but the memory ones.
    """

    def __init__(self, model: Any, loss_fn: Any, optimizer: Any, **kwargs: Any) -> None:
        for name in ("memory_size", "components", "batch_memory_frac", "memory_batch_size"):
            if name in kwargs:
                raise TypeError(f"FineTuningModelUpdater keeps no memory; drop the argument {name!r}")
        super().__init__(model, loss_fn, optimizer, components=[], memory_size=0, batch_memory_frac=0.0, **kwargs)
