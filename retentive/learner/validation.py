"""Validation: accuracy (retentive's ``val/accuracy``), loss and metrics (Renate's ``val_loss``,
``val_<name>``) on the validation chunk, summed over data-parallel shards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from retentive.components.base import reduce_task_loss
from retentive.learner.transforms import apply_transform
from retentive.models.routing import forward_routed

if TYPE_CHECKING:  # the Learner's attributes, for the type checker (see retentive.learner.host)
    from retentive.learner.host import LearnerHost as _Host
else:
    _Host = object


class ValidationMixin(_Host):
    """The Learner's validation loop (a mixin of :class:`~retentive.learner.Learner`)."""

    _val_correct: int
    _val_total: int

    def on_validation_epoch_start(self) -> None:
        self._val_correct = 0
        self._val_total = 0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y, t = self._unpack(batch)
        transform, target_transform = self.transforms["test"]
        x = apply_transform(transform, x, "test_transform")
        y = apply_transform(target_transform, y, "test_target_transform")
        logits = forward_routed(self.model, x, t)
        self.epoch_metrics.val_step(logits, y, reduce_task_loss(self.loss_fn(logits, y), int(y.shape[0]))[0])
        predictions = logits.argmax(dim=-1)
        self._val_correct += int((predictions == y).sum())
        self._val_total += int(y.numel())

    def on_validation_epoch_end(self) -> None:
        if self._trainer is not None and self.trainer.world_size > 1:  # each rank validated its shard
            counts = torch.tensor([self._val_correct, self._val_total], dtype=torch.int64, device=self.device)
            self._val_correct, self._val_total = self.trainer.strategy.reduce(counts, reduce_op="sum").tolist()
        if self._val_total:
            accuracy = self._val_correct / self._val_total
            if self.logger is not None:
                self.logger.log_metrics({"val/accuracy": accuracy}, step=self.total_steps)
            self.log("val/accuracy", accuracy, logger=False)  # for a metric="val/accuracy" monitor
        self.epoch_metrics.log_val(self)
