"""The update's chunk as its training loader reads it: every sample with its row index and id.

Per-step memories (ER, DER, ...) keep samples from shuffled batches, so the row a sample came
from is known only where it is read. :class:`IdentifiedView` makes each loaded batch an
:class:`IdentifiedBatch` that carries the rows' indices in the chunk and their sample ids beside
``(inputs, targets, task_ids)``; the Learner hands both to the memory with the samples
(:mod:`retentive.memory.identity`). The data order is unchanged: the view indexes the chunk with
exactly the indices the sampler draws.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from retentive.data.streaming import is_stream
from retentive.memory.identity import IdentifiedBatch, derive_ids, provided_ids
from retentive.memory.protocol import ReplayMemory
from retentive.state.lineage import chunk_fingerprint


class IdentifiedView(Dataset):
    """``dataset`` read as :class:`IdentifiedBatch` items (``route``: the task id of samples without one)."""

    def __init__(self, dataset: Dataset, route: int, ids: Tensor) -> None:
        self.dataset, self.route, self.ids = dataset, route, ids
        self.supports_batch_indexing = bool(getattr(dataset, "supports_batch_indexing", False))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: Any) -> IdentifiedBatch:
        item = self.dataset[index]
        if isinstance(index, int):
            task = item[2] if len(item) == 3 else self.route
            return IdentifiedBatch(item[0], item[1], task, index, int(self.ids[index]))  # type: ignore[arg-type]
        rows = torch.as_tensor(index, dtype=torch.int64).cpu()
        targets = torch.as_tensor(item[1])
        tasks = item[2] if len(item) == 3 else torch.full(targets.shape, self.route, dtype=torch.int64)
        return IdentifiedBatch(item[0], item[1], tasks, rows, self.ids[rows])


def chunk_ids(memory: ReplayMemory, dataset: Dataset, update: int, fingerprint: dict[str, Any] | None) -> Tensor | None:
    """Make ``dataset`` the memory's current source and return its samples' ids (one per row).

    ``fingerprint`` is the chunk's data fingerprint when already computed (the lineage's); a chunk
    without a hashable fingerprint is named by the update index instead. A dataset without a
    length (a stream) returns ``None``: it is read in order, so the memory numbers its rows as
    they are offered.
    """
    record = chunk_fingerprint(dataset) if fingerprint is None else fingerprint
    name = str(record.get("sha256") or f"unhashed-update-{update}")
    if is_stream(dataset):  # (a map-style dataset without a length was refused before: check_dataset)
        memory.begin_source(name, update)
        return None
    provided = provided_ids(dataset)
    memory.begin_source(name, update, provided)
    if provided is not None:
        return provided
    return derive_ids(name, torch.arange(len(dataset), dtype=torch.int64))  # type: ignore[arg-type]
