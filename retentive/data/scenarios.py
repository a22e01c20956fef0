"""Scenarios: how one dataset is cut into the chunks a pipeline receives."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from retentive.data.tensors import TensorChunk

SPLIT_MNIST_CLASSES: tuple[tuple[int, ...], ...] = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def class_incremental(
    dataset: TensorChunk, class_groups: Sequence[Sequence[int]], with_task_ids: bool = False
) -> list[TensorChunk]:
    """One chunk per class group, each holding every sample of its classes, in dataset order.

    With ``with_task_ids`` each chunk also yields its group's index as the task id (for
    task-incremental evaluation).
    """
    seen: set[int] = set()
    chunks = []
    for task, group in enumerate(class_groups):
        group = [int(c) for c in group]
        if not group:
            raise ValueError(f"class group {task} is empty")
        overlap = seen.intersection(group)
        if overlap:
            raise ValueError(f"classes {sorted(overlap)} appear in more than one class group")
        seen.update(group)
        mask = torch.isin(dataset.targets, torch.tensor(group, dtype=dataset.targets.dtype))
        index = mask.nonzero().squeeze(1)
        if index.numel() == 0:
            raise ValueError(f"class group {task} {group} has no samples in the dataset")
        chunk = dataset.subset(index)
        if with_task_ids:
            chunk = TensorChunk(chunk.inputs, chunk.targets, torch.full_like(chunk.targets, task))
        chunks.append(chunk)
    return chunks


def split_mnist(dataset: TensorChunk, with_task_ids: bool = False) -> list[TensorChunk]:
    """Split-MNIST: five chunks of two digits each, (0, 1), (2, 3), ..., (8, 9)."""
    return class_incremental(dataset, SPLIT_MNIST_CLASSES, with_task_ids=with_task_ids)
