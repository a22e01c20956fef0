"""Sample identity: which sample each memory row is, and which chunk it came from.

A replay memory outlives the chunks it was filled from, so every row carries three ordinary
memory keys (int64, one value per row), stored, exchanged, rewritten and saved like any other key
by every backend:

- ``sample_ids``: the sample's stable id. The dataset's own id when it provides one (a
  ``sample_ids`` attribute: a 1-d integer tensor, one id per sample, as
  :class:`~retentive.data.TensorChunk` takes it), otherwise derived from the chunk's data
  fingerprint and the row's index in the chunk (:func:`derive_ids`), so the same row of the same
  chunk has the same id in every run, process and replica.
- ``sample_sources``: the index of the row's source in the memory's :class:`SourceTable` (the
  chunk's fingerprint and the update that offered it: "when stored").
- ``sample_rows``: the row's index in that chunk.

The ids are not a third item of a sample: that is the task id (``(x, y, task_id)``), so the
dataset provides ids beside its samples, never inside them.

A memory saved before sample identity existed is given deterministic ids when it is loaded
(:func:`legacy_identity`): its source is the sha256 of the saved rows, its row index the slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

ID_KEY = "sample_ids"
SOURCE_KEY = "sample_sources"
ROW_KEY = "sample_rows"
#: the identity keys every sample memory stores beside its samples
IDENTITY_KEYS = (ID_KEY, SOURCE_KEY, ROW_KEY)
#: the source of rows offered outside an update (no chunk named): ids from the offer count
UNSOURCED = "unsourced"
_MASK63 = np.uint64((1 << 63) - 1)


class IdentifiedBatch(NamedTuple):
    """A training batch with its samples' identity (the Learner reads the first three as always)."""

    inputs: Any
    targets: Tensor
    task_ids: Tensor
    sample_rows: Tensor
    sample_ids: Tensor


def derive_ids(fingerprint: str, rows: Tensor) -> Tensor:
    """Stable non-negative int64 ids for rows ``rows`` of the chunk with data fingerprint ``fingerprint``.

    A splitmix64 finaliser of the fingerprint's 64-bit hash plus the row index: distinct rows of
    one chunk never share an id, and ids of different chunks collide with probability ~2^-63.
    """
    base = np.uint64(int.from_bytes(hashlib.blake2b(fingerprint.encode(), digest_size=8).digest(), "little"))
    z = rows.detach().cpu().numpy().astype(np.uint64) + base
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return torch.from_numpy((z & _MASK63).astype(np.int64)).to(rows.device)


def provided_ids(dataset: Any) -> Tensor | None:
    """The ids a dataset provides (its ``sample_ids`` attribute), checked; ``None`` if it has none."""
    ids = getattr(dataset, "sample_ids", None)
    if ids is None:
        return None
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"a dataset's sample_ids must be a 1-d integer tensor, got {ids.dtype} {tuple(ids.shape)}")
    if len(dataset) != ids.shape[0]:
        raise ValueError(f"the dataset has {len(dataset)} samples but {ids.shape[0]} sample_ids")
    return ids.to(torch.int64)


class SourceTable:
    """The chunks a memory's rows came from, and the source rows are credited to now.

    ``entries[i]`` is ``{"fingerprint": str, "update": int, "provided_ids": bool}``; a row's
    ``sample_sources`` value is its index here. The table only grows (a source whose rows were
    all replaced or deleted stays listed), so the indices stored in rows stay valid.
    """

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.current: int | None = None
        self._provided: Tensor | None = None
        self._next_row = 0

    def begin(self, fingerprint: str, update: int, provided: Tensor | None = None) -> int:
        """Credit rows offered from now on to chunk ``fingerprint`` of update ``update``."""
        entry = {"fingerprint": str(fingerprint), "update": int(update), "provided_ids": provided is not None}
        if entry not in self.entries:
            self.entries.append(entry)
        self.current = self.entries.index(entry)
        self._provided, self._next_row = provided, 0
        return self.current

    def _source(self) -> int:
        """The current source, or (outside an update) the one unsourced entry, listed once."""
        if self.current is not None:
            return self.current
        entry = {"fingerprint": UNSOURCED, "update": -1, "provided_ids": False}
        if entry not in self.entries:
            self.entries.append(entry)
        return self.entries.index(entry)

    def chunk_identity(self, rows: Tensor) -> dict[str, Tensor]:
        """The identity keys of rows ``rows`` of the current chunk (on ``rows``' device)."""
        source = self._source()
        rows = rows.to(torch.int64)
        if self._provided is not None:
            ids = self._provided.to(rows.device)[rows]
        else:
            ids = derive_ids(self.entries[source]["fingerprint"], rows)
        return {ID_KEY: ids, SOURCE_KEY: torch.full_like(rows, source), ROW_KEY: rows}

    def complete(self, batch: Mapping[str, Any], seen: int) -> Mapping[str, Any]:
        """``batch`` with its identity keys: kept if given, else those of its rows in the current
        chunk (``sample_rows`` if given, else the order offered in this chunk; outside an update
        the count of samples the memory has seen)."""
        if all(key in batch for key in IDENTITY_KEYS) or "targets" not in batch:
            return batch
        targets = batch["targets"]
        n, device = int(targets.shape[0]), targets.device
        rows = batch.get(ROW_KEY)
        if rows is None:
            rows = self.offered_rows(self.next_row(seen), 0, n, n).to(device)
        identity = self.chunk_identity(torch.as_tensor(rows, device=device))
        if ID_KEY in batch:
            identity[ID_KEY] = torch.as_tensor(batch[ID_KEY], device=device).to(torch.int64)
        return {**batch, **identity}

    def next_row(self, seen: int) -> int:
        """The row index the next sample offered without one gets."""
        return seen if self.current is None else self._next_row

    def offered_rows(self, start: int, offset: int, n: int, total: int) -> Tensor:
        """Rows ``start + offset ...`` for ``n`` samples offered without row indices, out of
        ``total`` offered together (a data-parallel step: ``offset`` is this rank's place)."""
        self._next_row = start + total
        return torch.arange(start + offset, start + offset + n, dtype=torch.int64)

    def state_dict(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self.entries]

    def load_state_dict(self, entries: list[dict[str, Any]] | None) -> None:
        """Restore the entries; the current source stays current if they hold it (a resume
        checkpoint restored during its update), else none is (a state from before the update)."""
        held = None if self.current is None else self.entries[self.current]
        self.entries = [dict(entry) for entry in entries or []]
        if held is not None and held in self.entries:
            self.current = self.entries.index(held)
        else:
            self.current, self._provided, self._next_row = None, None, 0


def legacy_identity(storage: Mapping[str, Tensor], size: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Deterministic identity keys for ``size`` saved rows that have none (a memory saved before
    sample identity): the source is the sha256 of the saved rows' bytes, the row index the slot."""
    digest = hashlib.sha256()
    for key in sorted(storage):
        digest.update(key.encode())
        digest.update(storage[key].detach().cpu().contiguous().view(torch.uint8).numpy().data)  # hashed in place
    return whole_source_identity("legacy-" + digest.hexdigest(), size)


def whole_source_identity(fingerprint: str, size: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Identity keys for ``size`` rows that are rows ``0..size-1`` of one source ``fingerprint``
    (source index 0), and that source's table entry (update ``-1``: stored before any update)."""
    rows = torch.arange(size, dtype=torch.int64)
    keys = {ID_KEY: derive_ids(fingerprint, rows), SOURCE_KEY: torch.zeros(size, dtype=torch.int64), ROW_KEY: rows}
    return keys, {"fingerprint": fingerprint, "update": -1, "provided_ids": False}
