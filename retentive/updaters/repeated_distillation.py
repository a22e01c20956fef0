"""Repeated Distillation (Renate's RD, after Deep Model Consolidation, Zhang et al., WACV 2020).

Each update, exactly as Renate 0.5.2 runs it:

1. an *expert*, a copy of the model re-initialised, is trained on the new chunk alone with the
   task loss;
2. the expert's logits on the chunk are offered, with the chunk, to the memory (reservoir); the
   samples kept from earlier chunks hold the logits of the previous consolidated model, so the
   memory now carries the knowledge of both the old model and the expert;
3. the kept model is re-initialised and trained on the memory alone with the double
   distillation loss ``0.5 * mean_c (z_c - (t_c - mean_c' t_c'))^2`` to the stored logits ``t``
   (targets normalised over the classes, as DMC does for several teachers);
4. the logits of every memory sample are replaced by the consolidated model's.

Unlike DMC it needs no auxiliary data (it distils over the memory) and no class-incremental
split (a fixed label space).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from retentive.components.base import StepContext
from retentive.data import nested
from retentive.data.tensors import TensorChunk
from retentive.learner import Learner, OptimizerFactory
from retentive.learner.transforms import apply_transform
from retentive.models.modes import evaluating
from retentive.models.protocol import forward_routed, has_own_reset, reset_model
from retentive.models.reinit import check_reinitializable, reinitialize_
from retentive.updaters.base import ModelUpdater
from retentive.updaters.chunks import memory_dataset
from retentive.updaters.hooks import Fit
from retentive.updaters.settings import DistillationSettings, LossFunction
from retentive.updaters.signature import refusing

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack

_REFUSED = (
    "components",
    "batch_memory_frac",
    "memory_batch_size",
    "memory_insertion",
    "refresh_memory_metadata",
    "loss_weight",
    "loss_normalization",
    "ema_memory_update_gamma",
)


def _reinitialize(model: torch.nn.Module) -> torch.nn.Module:
    """Fresh weights: the model's own ``reset_parameters()`` if it has one, else every layer's."""
    return model if reset_model(model) else reinitialize_(model)


def double_distillation_loss(predicted_logits: Tensor, target_logits: Tensor) -> Tensor:
    """Per sample ``0.5 * mean_c (z_c - (t_c - mean(t)))^2`` for ``(B, C)`` logits; shape ``(B,)``."""
    normalized = target_logits - target_logits.mean(dim=1, keepdim=True)
    return 0.5 * (predicted_logits - normalized).pow(2).mean(dim=1)


class _LogitChunk(TensorChunk):
    """The memory as a dataset of ``(x, y, task_id, stored logits)``."""

    def __init__(self, chunk: TensorChunk, logits: Tensor) -> None:
        super().__init__(chunk.inputs, chunk.targets, chunk.task_ids)
        self.logits = logits

    def __getitem__(self, index: Any) -> tuple[Any, ...]:
        return (*super().__getitem__(index), self.logits[index])


class RepeatedDistillationLearner(Learner):
    """The step of either phase: the task loss (``phase="expert"``) or the double distillation
    loss to the logits each batch carries (``phase="distill"``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.phase = "expert"
        self._batch_logits: Tensor | None = None

    def _unpack(self, batch: Any) -> tuple[Any, Tensor, Tensor]:
        if self.phase == "distill" and isinstance(batch, (tuple, list)) and len(batch) == 4:  # not validation's
            self._batch_logits = batch[3]
            batch = batch[:3]
        return super()._unpack(batch)

    def _total(self, ctx: StepContext) -> Tensor:
        if self.phase != "distill":
            return super()._total(ctx)
        assert self._batch_logits is not None
        loss = double_distillation_loss(ctx.outputs, self._batch_logits.to(ctx.outputs.dtype)).mean()
        ctx.losses["loss/new"] = ctx.losses["loss/total"] = loss
        return loss


class RepeatedDistillationModelUpdater(ModelUpdater):
    """Repeated Distillation: train an expert on the chunk, then distil it and the previous model
    (through the logits in memory) into the re-initialised kept model (see the module docstring).

    Both fits run ``max_epochs`` epochs, the expert's over the chunk, the consolidation's over the
    memory, with the same optimizer settings; a validation set and ``metric`` act on the
    consolidation (the state kept). The model needs a ``reset_parameters()`` of its own
    (as :class:`~retentive.models.VisionTransformer` has) or on every parametrised module (both
    phases start from scratch).

    Args:
        memory_size: the memory (reservoir) holding samples and their logits (required).
        seed: Renate's default is ``None``; here ``None`` means 0, so runs stay reproducible.
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but the memory
            batching and loss-mixing ones, and ``resume`` (the expert is not part of the state).
    """

    refused_arguments = refusing(_REFUSED, "trains on its memory with its own loss; drop {name!r}")

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        seed: int | None = None,
        **kwargs: Unpack[DistillationSettings],
    ) -> None:
        if kwargs.get("resume"):
            raise ValueError(
                "RepeatedDistillationModelUpdater cannot resume: the expert it trains first in each update is not "
                "part of the state; resume=True is not supported"
            )
        if isinstance(memory_size, int) and not isinstance(memory_size, bool) and memory_size < 1:
            raise ValueError(
                f"Repeated Distillation distils over its memory, so memory_size must be >= 1, got {memory_size}"
            )
        if not has_own_reset(model):
            check_reinitializable(model)
        fixed: dict[str, Any] = {"batch_memory_frac": 0.0, "seed": 0 if seed is None else seed}
        super().__init__(model, loss_fn, optimizer, (), memory_size, memory_insertion="update_end", **fixed, **kwargs)

    def build_learner(self, **settings: Any) -> Learner:
        return RepeatedDistillationLearner(**settings)

    @torch.no_grad()
    def _logits(self, model: torch.nn.Module, inputs: Any, task_ids: Tensor) -> Tensor:
        device = next(model.parameters()).device
        inputs = apply_transform(self.learner.transforms["test"][0], nested.to(inputs, device), "test_transform")
        return forward_routed(model, inputs, task_ids.to(device)).float().cpu()

    def fits(self, train_dataset: Dataset, val_dataset: Dataset | None, task_id: int) -> Iterator[Fit]:
        """Steps 1-3: the expert's fit on the chunk, its logits to the memory, the consolidation's fit."""
        learner = self.learner
        assert isinstance(learner, RepeatedDistillationLearner)
        expert = _reinitialize(copy.deepcopy(self.model))
        learner.model, learner.phase = expert, "expert"
        try:
            yield Fit(train_dataset)  # not validated: the expert is not kept
        finally:
            learner.model = self.model
        expert.eval()
        for batch in self.batches(train_dataset, task_id):
            logits = self._logits(expert, batch.inputs, batch.task_ids)
            self.memory.add(
                {"inputs": batch.inputs, "targets": batch.targets, "task_ids": batch.task_ids, "logits": logits}
            )
        del expert
        _reinitialize(self.model)
        # the consolidation reads the memory, so its batches get the buffer transforms (Renate's)
        learner.phase, train_transforms = "distill", learner.transforms["train"]
        learner.transforms["train"] = learner.transforms["buffer"]
        try:
            logits = self.memory.decoded("logits").cpu()
            yield Fit(_LogitChunk(memory_dataset(self.memory), logits), val_dataset)
        finally:
            learner.phase, learner.transforms["train"] = "expert", train_transforms

    def after_fit(self, train_dataset: Dataset, task_id: int) -> None:
        """Step 4: every stored logit becomes the consolidated model's."""
        with evaluating(self.model):
            for start in range(0, len(self.memory), 1024):
                rows = self.memory.rows(start, min(start + 1024, len(self.memory)))
                idx = torch.arange(start, start + len(rows), device=self.memory.device)
                fresh = self._logits(self.model, rows.inputs, rows.task_ids).to(self.memory.device)
                self.memory.refresh(idx, "logits", fresh, 0.0)
