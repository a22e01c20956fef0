"""The one context of update-level hooks, read by components and memory policies alike.

A Component's ``on_update_start`` / ``on_train_epoch_end`` / ``on_update_end`` and an insertion
policy's ``on_train_epoch_end`` / ``on_update_end`` receive an :class:`UpdateContext`: the model,
the memory, the update's identity and streams, and iterators over the whole chunk and the whole
memory. The Learner builds one per hook call; :func:`chunk_context` builds one from a map-style
dataset, for running update-end selection outside a Learner (tests, benchmarks, notebooks).

It lives beside the memory rather than with the components because memory policies (which the
components package builds on) read it too.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from retentive.data import nested
from retentive.models.protocol import forward_routed

if TYPE_CHECKING:
    from retentive.memory.protocol import ReplayMemory


class Batch(NamedTuple):
    """A batch of samples on the training device: inputs (a tensor or nested), targets, task ids."""

    inputs: Any
    targets: Tensor
    task_ids: Tensor


def _identity(t: Tensor) -> Tensor:
    return t


@dataclass
class UpdateContext:
    """What an update-level hook may read: the model, the memory, and the chunk in batches.

    :meth:`chunk_batches` and :meth:`memory_batches` iterate the *whole* chunk and memory (on every
    data-parallel rank alike, so that every replica computes the same statistics), in a fixed
    order, untransformed (``test_transform`` applied when set); the chunk on the training device,
    the memory on its own device.
    """

    model: nn.Module
    memory: ReplayMemory
    task_id: int
    update: int
    device: torch.device
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    batch_size: int
    rank: int = 0
    world_size: int = 1
    generator: torch.Generator | None = None
    rng: random.Random | None = None
    epoch: int | None = None
    _chunk: Callable[[int], Iterator[Batch]] | None = None
    _forward: Callable[[Any, Tensor], Tensor] | None = None
    #: averages a tensor over the data-parallel ranks (the identity in one process)
    all_reduce_mean: Callable[[Tensor], Tensor] = _identity
    #: metadata keys to produce for rows written into an empty memory (stored keys win otherwise)
    memory_keys: tuple[str, ...] = ()

    def chunk_batches(self, batch_size: int | None = None) -> Iterator[Batch]:
        """The current chunk, in order, in batches of ``batch_size`` (default: the training batch)."""
        if self._chunk is None:
            return iter(())
        return self._chunk(batch_size or self.batch_size)

    def memory_batches(self, batch_size: int | None = None) -> Iterator[Batch]:
        """The samples held in memory, in slot order, in batches."""
        size = batch_size or self.batch_size
        for start in range(0, len(self.memory), size):
            rows = self.memory.rows(start, min(start + size, len(self.memory)))
            yield Batch(rows.inputs, rows.targets, rows.task_ids)

    def forward(self, inputs: Any, task_ids: Tensor) -> Tensor:
        """The model's logits on ``inputs``, routed by task id as in training."""
        if self._forward is None:
            raise RuntimeError("this UpdateContext was built without a forward function")
        return self._forward(inputs, task_ids)


def _dataset_batches(chunk: Dataset, task_id: int, device: torch.device) -> Callable[[int], Iterator[Batch]]:
    """The chunk in order as :class:`Batch` es on ``device`` (a tensor chunk is sliced, not loaded)."""

    def batches(batch_size: int) -> Iterator[Batch]:
        inputs, targets = getattr(chunk, "inputs", None), getattr(chunk, "targets", None)
        if torch.is_tensor(inputs) and torch.is_tensor(targets):
            task_ids = getattr(chunk, "task_ids", None)
            raw: Iterator[Any] = (
                (inputs[i : i + batch_size], targets[i : i + batch_size])
                + (() if task_ids is None else (task_ids[i : i + batch_size],))
                for i in range(0, len(targets), batch_size)
            )
        else:
            raw = iter(DataLoader(chunk, batch_size=batch_size, shuffle=False))
        for batch in raw:
            y = torch.as_tensor(batch[1]).long()
            t = torch.as_tensor(batch[2]).long() if len(batch) == 3 else torch.full_like(y, task_id)
            yield Batch(nested.to(batch[0], device), y.to(device), t.to(device))

    return batches


def chunk_context(
    model: nn.Module,
    memory: ReplayMemory,
    chunk: Dataset,
    task_id: int = 0,
    update: int = 0,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = nn.functional.cross_entropy,
    device: torch.device | None = None,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 1024,
) -> UpdateContext:
    """An :class:`UpdateContext` over a map-style dataset of ``(x, y[, task_id])``, outside a Learner.

    The model runs as given (no transform), routed by task id; everything moves to ``device``
    (the CPU by default).
    """
    where = torch.device("cpu") if device is None else torch.device(device)

    def forward(inputs: Any, task_ids: Tensor) -> Tensor:
        return forward_routed(model, nested.to(inputs, where), task_ids.to(where))

    return UpdateContext(
        model=model,
        memory=memory,
        task_id=task_id,
        update=update,
        device=where,
        loss_fn=loss_fn,
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
        _chunk=_dataset_batches(chunk, task_id, where),
        _forward=forward,
    )


#: the name update-end selection outside a Learner was built with before the contexts were one
ChunkContext = chunk_context
