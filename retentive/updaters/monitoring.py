"""The best epoch of an update, by a monitored validation metric (Renate's ``metric``/``mode``).

Renate writes the state of the epoch whose monitored metric was best (its ``ModelCheckpoint``),
whether or not early stopping ended the fit sooner. :class:`BestEpoch` keeps a copy of the
updater's state (weights, memory, component state, counters) at each improvement and puts it
back when the fit ends, before the update-end hooks run, so Fisher matrices, class means and
the saved state all describe the same model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch

from retentive.learner.metrics import best


class BestEpoch(pl.Callback):
    """Remember the updater's state at the best value of ``metric`` and restore it at fit end.

    Args:
        metric: a logged name (``val_loss``, ``val_<name>``, ``val/accuracy``, ...).
        mode: ``"min"`` or ``"max"``.
        capture: returns a copy of everything the fit changes (the updater's ``_snapshot``).
        restore: puts such a copy back (the updater's ``_put_back``).
    """

    def __init__(self, metric: str, mode: str, capture: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        self.metric, self.mode = metric, mode
        self.capture, self.restore = capture, restore
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.last_epoch: int | None = None
        self._state: Any = None

    def _better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        return value < self.best_value if self.mode == "min" else value > self.best_value

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = best(trainer.callback_metrics, self.metric)
        if value is None:
            return
        self.last_epoch = trainer.current_epoch
        if self._better(value):
            self.best_value, self.best_epoch = value, trainer.current_epoch
            self._state = self.capture()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._state is not None and self.best_epoch != self.last_epoch:
            self.restore(self._state)
        self._state = None


class StreamCounter(pl.Callback):
    """The samples of a streamed chunk's first epoch, summed over the ranks, as ``host.streamed_samples``
    (what ``tasks_seen`` records for a stream that does not declare its length; under data
    parallelism it includes the at most ``world_size - 1`` samples repeated to even the ranks)."""

    def __init__(self, host: Any) -> None:
        self.host, self.count, self.epoch = host, 0, -1

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, index: int
    ) -> None:
        if self.epoch < 0:  # the first epoch this fit runs (a resumed fit starts later): every epoch is one pass
            self.epoch = trainer.current_epoch
        if trainer.current_epoch == self.epoch:
            self.count += int(torch.as_tensor(batch[1]).shape[0])

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        local = torch.tensor(self.count, dtype=torch.int64, device=module.device)
        self.host.streamed_samples = int(trainer.strategy.reduce(local, reduce_op="sum"))
