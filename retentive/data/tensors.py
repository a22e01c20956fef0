"""A dataset held as tensors: the chunk format scenarios produce and the fast path loaders use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from retentive.data import nested
from retentive.data.transfer import to_device


class TensorChunk(Dataset):
    """``(inputs[i], targets[i])`` — or with ``task_ids``, ``(inputs[i], targets[i], task_ids[i])``.

    ``sample_ids`` (optional, one int64 per sample) are the samples' own ids, which the replay
    memory keeps with each sample it stores; they are not part of a sample (the third item is the
    task id), so the loader reads them beside it.

    ``inputs`` is a tensor or a nested dict/tuple/list of tensors (tokenised text:
    ``{"input_ids": (N, L), "attention_mask": (N, L)}``), every leaf with the same leading size
    ``N``; a sample's ``x`` has the same structure, each leaf indexed.

    ``targets`` is public so that scenarios and ``mask_unused_classes`` read labels without
    iterating the data. Indexing with a tensor or list of indices returns a whole batch at once,
    which lets the updater's loader skip per-sample fetching and collation
    (``supports_batch_indexing``).
    """

    supports_batch_indexing = True

    def __init__(
        self, inputs: Any, targets: Tensor, task_ids: Tensor | None = None, sample_ids: Tensor | None = None
    ) -> None:
        n = nested.batch_size(inputs) if nested.is_nested(inputs) else int(inputs.shape[0])
        if n != targets.shape[0]:
            raise ValueError(f"{n} inputs but {targets.shape[0]} targets")
        if task_ids is not None and task_ids.shape[0] != targets.shape[0]:
            raise ValueError(f"{task_ids.shape[0]} task ids for {targets.shape[0]} samples")
        if sample_ids is not None and (sample_ids.dim() != 1 or sample_ids.shape[0] != targets.shape[0]):
            raise ValueError(f"sample_ids must be 1-d with one id per sample, got shape {tuple(sample_ids.shape)}")
        self.inputs = inputs
        self.targets = targets
        self.task_ids = task_ids
        #: the samples' own stable ids, if the data has them (else the memory derives them from
        #: the chunk's fingerprint and the row index: retentive.memory.identity)
        self.sample_ids = sample_ids

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, index: int | list[int] | Tensor | slice) -> tuple[Any, ...]:
        if isinstance(index, list) and self.targets.device.type == "cuda":  # a chunk held on the GPU
            index = to_device(torch.as_tensor(index), self.targets.device)
        inputs = self.inputs[index] if torch.is_tensor(self.inputs) else nested.index(self.inputs, index)
        if self.task_ids is None:
            return inputs, self.targets[index]
        return inputs, self.targets[index], self.task_ids[index]

    def subset(self, index: Tensor) -> TensorChunk:
        """The samples at ``index``, as a new chunk with its own (contiguous) storage."""
        index = torch.as_tensor(index, dtype=torch.long)
        task_ids = None if self.task_ids is None else self.task_ids[index]
        sample_ids = None if self.sample_ids is None else self.sample_ids[index]
        return TensorChunk(nested.index(self.inputs, index), self.targets[index], task_ids, sample_ids)


def dataset_batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[Any, ...]]:
    """Batches of ``(x, y[, task_ids])`` in order: tensor slices for a TensorChunk (no per-sample
    indexing and collation), a DataLoader otherwise."""
    if isinstance(dataset, TensorChunk):
        for start in range(0, len(dataset), batch_size):
            stop = start + batch_size
            batch = (nested.index(dataset.inputs, slice(start, stop)), dataset.targets[start:stop])
            yield batch if dataset.task_ids is None else (*batch, dataset.task_ids[start:stop])
        return
    yield from DataLoader(dataset, batch_size=batch_size, shuffle=False)
