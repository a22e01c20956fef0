"""Renate's ``train_dataset_collate_fn`` / ``val_dataset_collate_fn``: a chunk whose samples need
a collate function to become tensors (a dict of features, a token list).

:class:`CollatedView` turns each sample into the ``(x, y[, task_id])`` form every other part of
retentive handles (the checks, the memory, the update-end passes, the state folder) by collating
it alone and taking the one row back out, so a custom collate works everywhere a chunk goes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from retentive.data import nested
from retentive.data.streaming import refuse_stream
from retentive.errors import DataError


class CollatedView(Dataset):
    """``dataset`` seen through ``collate_fn``: sample ``i`` is ``collate_fn([dataset[i]])`` unbatched."""

    def __init__(self, dataset: Dataset, collate_fn: Callable[[list[Any]], Any], role: str) -> None:
        if not callable(collate_fn):
            raise TypeError(f"the {role} collate_fn must be callable, got {type(collate_fn).__name__}")
        refuse_stream(dataset, f"the {role} collate_fn", "map the stream's samples instead")
        self.dataset, self.collate_fn, self.role = dataset, collate_fn, role

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        batch = self.collate_fn([self.dataset[index]])
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise DataError(
                f"the {self.role} collate_fn must return (inputs, targets) or (inputs, targets, task_ids), "
                f"got {type(batch).__name__}"
            )
        try:
            return tuple(
                nested.tree_map(lambda leaf: leaf[0], part) if not torch.is_tensor(part) else part[0] for part in batch
            )
        except (TypeError, IndexError) as error:
            raise DataError(f"the {self.role} collate_fn must return batched tensors: {error}") from error
