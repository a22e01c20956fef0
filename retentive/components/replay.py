"""Replay loss terms: cross-entropy on memory samples (ER) and logit matching (DER).

ER (Chaudhry et al., 2019):      L = CE(f(x_m), y_m)
DER (Buzzega et al., 2020):      L = mean((f(x_m) - z_m)^2), z_m stored at insertion
DER++ adds an ER term on the same memory batch. Each returns the raw term; the Learner applies
the weight (``alpha``, ``beta``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from retentive.components.base import Component, StepContext


def logit_mse(outputs: Tensor, stored_logits: Tensor) -> Tensor:
    """Mean squared error over every logit of every sample, against the stored (fixed) logits."""
    return F.mse_loss(outputs, stored_logits.to(outputs.dtype))


class MemoryCrossEntropy(Component):
    """The learner's task loss applied to replayed memory samples (ER's term, DER++'s beta term)."""

    def loss(self, ctx: StepContext) -> Tensor | None:
        if ctx.memory is None or ctx.memory_outputs is None:
            return None
        return ctx.task_loss(ctx.memory_outputs, ctx.memory.targets)


class LogitMSE(Component):
    """DER's distillation term: keep the logits on memory samples close to those stored with them."""

    memory_keys = ("logits",)

    def loss(self, ctx: StepContext) -> Tensor | None:
        if ctx.memory is None or ctx.memory_outputs is None:
            return None
        return logit_mse(ctx.memory_outputs, ctx.memory.data["logits"])
