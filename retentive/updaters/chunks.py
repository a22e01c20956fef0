"""Moving whole chunks into a memory, and a memory out as a dataset (Offline-ER, GDumb, Joint)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset

from retentive.data import nested
from retentive.data.tensors import TensorChunk, dataset_batches
from retentive.memory.protocol import ReplayMemory


def chunk_batches(dataset: Dataset, task_id: int, batch_size: int = 4096) -> Iterator[dict[str, Tensor]]:
    """The chunk in order, as memory batches (``inputs``, ``targets``, ``task_ids``)."""
    for batch in dataset_batches(dataset, batch_size):
        inputs, targets = batch[0], torch.as_tensor(batch[1]).long()
        task_ids = torch.as_tensor(batch[2]).long() if len(batch) == 3 else torch.full_like(targets, task_id)
        yield {"inputs": inputs, "targets": targets, "task_ids": task_ids}


def add_chunk(memory: ReplayMemory, dataset: Dataset, task_id: int) -> None:
    """Offer every sample of ``dataset`` to ``memory`` in order (its policy decides what stays)."""
    for batch in chunk_batches(dataset, task_id):
        memory.add(batch)


def memory_dataset(memory: ReplayMemory) -> TensorChunk:
    """The samples the memory holds, as a dataset yielding ``(x, y, task_id)`` (on the CPU)."""
    n = len(memory)
    if n == 0:
        raise ValueError("the memory is empty; there is nothing to train on")
    inputs = nested.to(memory.decoded("inputs"), "cpu")  # decoded: a tensor or the nested leaves
    return TensorChunk(inputs, memory.decoded("targets").cpu(), memory.decoded("task_ids").cpu())
