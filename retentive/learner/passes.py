"""Update-end passes over data with the trained model: memory insertion and metadata refresh.

Both run in eval mode without gradients, in batches, and leave the model's mode as it was. Under
data parallelism every rank runs them over the whole chunk and the whole memory, so every replica
makes the same decisions (the memory's insertion stream is identical on every rank).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from retentive.components.base import Batch
from retentive.data import nested
from retentive.models.modes import evaluating
from retentive.models.routing import forward_routed
from retentive.models.taps import FeatureTaps

if TYPE_CHECKING:
    from retentive.learner.core import Learner


@contextmanager
def _evaluating(learner: Learner) -> Iterator[FeatureTaps | None]:
    taps = FeatureTaps(learner.model, learner.feature_layers) if learner.feature_layers else None
    try:
        with evaluating(learner.model):
            yield taps
    finally:
        if taps is not None:
            taps.remove()


def _outputs(learner: Learner, batch: Batch, taps: FeatureTaps | None) -> tuple[Tensor, dict[str, Tensor]]:
    inputs = nested.to(batch.inputs, learner.device)
    outputs = forward_routed(learner.model, inputs, batch.task_ids.to(learner.device))
    return outputs, dict(taps.outputs) if taps is not None else {}


def insert_chunk(learner: Learner, batches: Iterable[Batch]) -> None:
    """Offer every sample of the chunk to the memory, with metadata from the trained model."""
    with _evaluating(learner) as taps:
        for batch in batches:
            row = {"inputs": batch.inputs, "targets": batch.targets, "task_ids": batch.task_ids}
            if learner.memory_keys:
                row.update(learner.metadata(*_outputs(learner, batch, taps)))
            learner.memory.add(row)


def refresh_metadata(learner: Learner, slots: Tensor, batch_size: int = 512) -> None:
    """Recompute the stored metadata of memory ``slots`` with the trained model (gamma 0 refresh)."""
    if not learner.memory_keys or slots.numel() == 0:
        return
    memory = learner.memory
    slots = torch.unique(slots.to(memory.device))
    with _evaluating(learner) as taps:
        for start in range(0, slots.numel(), batch_size):
            idx = slots[start : start + batch_size]
            drawn = memory.gather(idx)
            fresh = learner.metadata(*_outputs(learner, Batch(drawn.inputs, drawn.targets, drawn.task_ids), taps))
            for key, value in fresh.items():
                memory.refresh(idx, key, value, 0.0)
