"""Held-out data per chunk: a seeded share of each chunk, kept with the state it was split for.

A gate compares the candidate with the current model on data neither trained on. When a pipeline
names no such data, each update holds back a seeded share of its chunk before training
(:func:`split_chunk`) and keeps it in its state (:class:`HeldOut`), so that every later gate
evaluates on all earlier chunks too: a candidate that forgets an old chunk is caught even though
that chunk's data is long gone. The sets are tensors only, stored in the state's learner payload.

The record also keeps the candidate's accuracies of every gate along the served chain (one row
per gated update, the chunks it measured, the new one last): the accuracy matrix that the
registry logs with each update, carried by the state itself so that it needs no earlier version.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from retentive.data import nested
from retentive.data.streaming import refuse_stream
from retentive.data.tensors import TensorChunk

#: the key of the accuracy rows in the stored record (beside the sets, which are named by update)
ROWS = "accuracy_rows"


def _as_tensors(dataset: Dataset, task_id: int) -> TensorChunk:
    from retentive.updaters.chunks import chunk_batches  # the updaters package imports this one

    rows = list(chunk_batches(dataset, task_id))
    return TensorChunk(
        nested.cat([r["inputs"] for r in rows]),
        torch.cat([r["targets"] for r in rows]),
        torch.cat([r["task_ids"] for r in rows]),
    )


def split_chunk(dataset: Dataset, fraction: float, seed: int, task_id: int) -> tuple[Dataset, TensorChunk]:
    """``(the part to train on, the held-out part)``: a share ``fraction`` of the samples drawn by
    ``seed``, at least one, and at least one left to train on."""
    refuse_stream(dataset, "a gate's held-out split (holdout=)")
    n = len(dataset)  # type: ignore[arg-type]
    held = min(max(1, math.ceil(fraction * n)), n - 1)
    if held < 1:
        raise ValueError(f"cannot hold out part of a chunk of {n} sample(s); it needs at least 2")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held_index, train_index = order[:held].sort().values, order[held:].sort().values
    if isinstance(dataset, TensorChunk):
        train: Dataset = dataset.subset(train_index)
        heldout = dataset.subset(held_index)
        if heldout.task_ids is None:
            heldout.task_ids = torch.full_like(heldout.targets, task_id)
        return train, heldout
    return Subset(dataset, train_index.tolist()), _as_tensors(Subset(dataset, held_index.tolist()), task_id)


class HeldOut:
    """The held-out sets of the chunks seen so far, by chunk name, in the order they were added."""

    def __init__(self) -> None:
        self.sets: dict[str, TensorChunk] = {}
        self.rows: list[list[float]] = []  # the accuracy matrix of the gates so far (see the module)

    def __len__(self) -> int:
        return len(self.sets)

    def __iter__(self) -> Iterator[tuple[str, TensorChunk]]:
        return iter(self.sets.items())

    def add(self, name: str, chunk: TensorChunk) -> None:
        self.sets[name] = chunk

    def add_row(self, accuracies: Sequence[float]) -> None:
        """Record a gate's measure of its candidate: one accuracy per chunk measured, the new one last."""
        self.rows.append([float(value) for value in accuracies])

    def stored(self) -> bool:
        """Whether there is anything to keep in the state (held-out sets or accuracy rows)."""
        return bool(self.sets or self.rows)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            name: {"inputs": c.inputs, "targets": c.targets, "task_ids": c.task_ids} for name, c in self.sets.items()
        }
        if self.rows:  # set names are update indices, so this key names no set
            state[ROWS] = [list(row) for row in self.rows]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rows = [[float(value) for value in row] for row in state.get(ROWS, [])]
        self.sets = {
            str(name): TensorChunk(entry["inputs"], entry["targets"], entry.get("task_ids"))
            for name, entry in state.items()
            if name != ROWS
        }

    def copy(self) -> HeldOut:
        other = HeldOut()
        other.sets = dict(self.sets)  # the sets themselves are never changed, only replaced
        other.rows = [list(row) for row in self.rows]
        return other
