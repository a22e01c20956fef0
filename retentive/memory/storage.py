"""The tensor storage of a sample memory: one tensor per key, laid out on the first insert and
grown as it fills.

Storage is one tensor per key (``inputs``, ``targets``, ``task_ids``, and metadata such as
``logits`` or ``features.layer3``), laid out on first insert from the sample shapes. Where the
rows reside is the backend's (:mod:`retentive.memory.backends`): by default on the training
device, allocated as the memory fills: each key's tensor holds :attr:`TensorStorage.allocated`
rows, grown geometrically (doubling, capped at the capacity) when a write needs more, each growth
checked first against the device's budget (:mod:`retentive.memory.budget`), so
``memory_size=10**7`` costs only the rows filled; or the whole capacity at once (``"tensor"``);
or memory-mapped files on disk (``"disk"``).

Nested inputs (a dict/tuple/list of tensors, e.g. tokenised text) are stored as one tensor per
leaf, ``inputs.input_ids`` and ``inputs.attention_mask`` (see :mod:`retentive.memory.layout`), and
read back in the structure they were offered in. Floating input leaves may be stored compactly
(``input_dtype``, see :mod:`retentive.memory.compact`); everything else is stored as offered.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

from retentive.data import nested
from retentive.data.transfer import to_device
from retentive.errors import MemoryShapeError
from retentive.memory.backends import DEFAULT_BACKEND, copy_rows, make_backend
from retentive.memory.compact import decode, encode, parse_input_dtype
from retentive.memory.layout import INPUTS, Spec, batch_size, check_rows, flat_rows, is_input_key


class TensorStorage:
    """The rows of a memory of ``capacity`` samples, by key; what a :class:`ReplayBuffer` writes
    its policy's choices into and draws from.

    Args:
        capacity: the most rows held.
        input_dtype: the compact dtype of floating input leaves (``None``: as offered).
        backend: where the rows reside: ``"grown"``, ``"tensor"`` or ``"disk"``
            (:mod:`retentive.memory.backends`).
        directory: the scratch folder of the ``"disk"`` backend (``None``: the system's temporary folder).
    """

    def __init__(
        self,
        capacity: int,
        input_dtype: str | torch.dtype | None = None,
        backend: str = DEFAULT_BACKEND,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self.capacity = capacity
        self.backend = make_backend(backend, directory)
        self.input_dtype = parse_input_dtype(input_dtype)
        self.storage: dict[str, Tensor] = {}
        #: the dtype each key is offered and sampled in (the storage differs for compact inputs)
        self.dtypes: dict[str, torch.dtype] = {}
        #: the containers of nested inputs (:func:`retentive.data.nested.structure`); ``None`` for
        #: a plain tensor or before the first insert
        self.input_structure: Any = None
        self._specs: dict[str, Spec] | None = None  # see specs()
        self._input_keys: frozenset[str] = frozenset()
        self.size = 0
        self.device = torch.device("cpu")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.storage)

    @property
    def storage_device(self) -> torch.device:
        """Where the rows reside: the training device, or the CPU for a disk-backed memory."""
        return self.backend.storage_device(self.device)

    def to(self, device: torch.device | str) -> Self:
        """Move the storage to ``device`` (the training device; a disk-backed memory's rows stay
        in their files and reach the device as they are sampled); the generator stays on the CPU."""
        self.device = torch.device(device)
        self.storage = {k: v.to(self.storage_device) for k, v in self.storage.items()}
        return self

    def spec(self, key: str) -> Spec | None:
        """The per-sample shape and the offered dtype of storage key ``key``; ``None`` if not stored.

        Nested inputs have one storage key per leaf (``inputs.input_ids``); see :meth:`input_spec`.
        """
        stored = self.storage.get(key)
        return None if stored is None else (stored.shape[1:], self.dtypes[key])

    def specs(self) -> dict[str, Spec]:
        """Every storage key's per-sample shape and offered dtype (empty before the first insert).

        Computed once per layout (the storage is (re)built only by :meth:`allocate` and
        :meth:`load_state_dict`), since every insert checks against it; do not modify it.
        """
        if self._specs is None:
            self._specs = {key: (value.shape[1:], self.dtypes[key]) for key, value in self.storage.items()}
            self._input_keys = frozenset(key for key in self._specs if is_input_key(key))
        return self._specs

    def input_spec(self) -> dict[str, Spec] | None:
        """``{leaf path: (per-sample shape, offered dtype)}`` of the stored inputs, ``None`` if empty.

        The paths are :func:`retentive.data.nested.flatten`'s: ``""`` for a plain tensor,
        ``"input_ids"`` for a dict's key, ``"0"`` for a tuple's first item.
        """
        if not self.storage:
            return None
        cut = len(INPUTS) + len(nested.SEPARATOR)
        return {(key[cut:] if key != INPUTS else ""): spec for key, spec in self.specs().items() if is_input_key(key)}

    def _stored_dtype(self, key: str, dtype: torch.dtype) -> torch.dtype:
        """Compact storage applies to floating input leaves only; everything else is kept as offered."""
        if self.input_dtype is not None and is_input_key(key) and dtype.is_floating_point:
            return self.input_dtype
        return dtype

    def prepare(self, batch: Mapping[str, Any]) -> tuple[dict[str, Tensor], int]:
        """``batch`` flattened to storage keys (one per input leaf) and its size, after checking
        that it fits the storage: the same keys and input leaves, per-sample shapes and dtypes.

        Raises :class:`MemoryShapeError` naming the key or leaf and what is stored; nothing is
        changed.
        """
        flat = flat_rows(batch)
        n = batch_size(flat)
        check_rows(flat, self.specs())
        if self.storage and INPUTS in batch:
            offered = nested.structure(batch[INPUTS])
            if not nested.same_layout(offered, self.input_structure):
                raise MemoryShapeError(
                    f"the memory holds inputs structured as {self.input_structure} but the batch's are {offered}"
                )
        return flat, n

    def allocate(self, batch: Mapping[str, Any]) -> None:
        """Lay the storage out from a batch's shapes and dtypes (done by the first insert).

        Only the backend's first rows are allocated (none but for ``"tensor"``, the whole
        capacity): :meth:`write` grows the storage as slots are filled.
        """
        self.input_structure = nested.structure(batch[INPUTS]) if INPUTS in batch else None
        self._specs = None
        for key, value in flat_rows(batch).items():
            self.dtypes[key] = value.dtype
            shape, stored = tuple(value.shape[1:]), self._stored_dtype(key, value.dtype)
            self.storage[key] = self.backend.new(key, shape, stored, self.storage_device)
        self._reserve_first_rows()

    def _reserve_first_rows(self) -> None:
        try:
            self.reserve(self.backend.first_rows(self.capacity))
        except BaseException:
            self.storage, self.dtypes, self._specs = {}, {}, None  # refused: the memory stays empty
            raise

    @property
    def allocated(self) -> int:
        """The rows each key's storage holds now: at least :attr:`size`, at most :attr:`capacity`."""
        return int(next(iter(self.storage.values())).shape[0]) if self.storage else 0

    def check_room(self, rows: int) -> None:
        """Raise :class:`~retentive.memory.budget.MemoryBudgetError` if storage for ``rows`` filled
        slots (at most the capacity) would not fit the device's budget now; nothing is changed.

        An updater can call it before training with ``len(memory) + len(chunk)``: the memory can hold
        no more rows after the update than that.
        """
        self.backend.check_room(self.storage, min(rows, self.capacity), self.capacity, self.storage_device)

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` filled slots: every key's storage grows on its device and dtype to
        ``max(rows, 2 * allocated)`` rows, capped at the capacity, keeping the rows it holds.

        Raises :class:`~retentive.memory.budget.MemoryBudgetError` naming the bytes needed and
        available, the memory unchanged, when even ``rows`` rows do not fit the device's budget.
        """
        if rows > self.allocated and self.storage:
            grown = self.backend.grow(self.storage, min(rows, self.capacity), self.capacity, self.storage_device)
            self.storage.update(grown)

    def encode(self, rows: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Flat rows (storage keys) as they are stored (compact inputs), where the rows reside."""
        return {
            key: encode(value.detach().to(self.storage_device), self._stored_dtype(key, value.dtype))
            for key, value in rows.items()
        }

    def write(self, rows: Mapping[str, Tensor], slots: Tensor, size: int | None = None) -> None:
        """Store encoded ``rows`` (storage keys, see :meth:`encode`) into ``slots``, one row per slot.

        ``size`` is the filled size afterwards when the caller knows it; otherwise it is read from
        the slots (once the memory is full, never: nothing is read back from a tensor per step).
        """
        if not slots.numel():
            return
        if size is None and self.size < self.capacity:
            size = max(self.size, int(slots.max()) + 1)
        if size is not None:
            self.reserve(size)
        dst = to_device(slots, self.storage_device)  # no host sync on a GPU (retentive.data.transfer)
        for key, value in rows.items():
            self.backend.write(key, self.storage[key], dst, value.to(self.storage_device))
        if size is not None:
            self.size = size

    def _gather(self, idx: Tensor | slice) -> dict[str, Any]:
        """The rows ``idx`` of every key on the training device, inputs decoded and rebuilt in
        their offered structure (rows read from disk reach a GPU through pinned memory)."""
        data: dict[str, Any] = {}
        leaves: dict[str, Tensor] = {}
        self.specs()  # the input keys, once per layout
        where = self.storage_device
        at = to_device(idx, where) if isinstance(idx, Tensor) else idx
        pin = where.type == "cpu" and self.device.type == "cuda"  # staged in pinned memory for the copy
        for key, value in self.storage.items():
            rows = self.backend.read(key, value, at, pin)
            rows = rows if where == self.device else to_device(rows, self.device)
            if key in self._input_keys:
                leaves[key] = decode(rows, self.dtypes[key])
            else:
                data[key] = rows
        if leaves:
            data[INPUTS] = nested.unflatten(leaves, self.input_structure, INPUTS)
        return data

    def compact(self, keep: Tensor) -> None:
        """Keep only the filled rows where the bool mask ``keep`` (one per row) is set, moved up to
        slots ``0..kept-1``: every key's storage is copied anew, so nothing removed survives in it
        (a removed sample is gone from the tensors and from whatever is saved from them)."""
        where = keep.to(self.storage_device, torch.bool).nonzero().squeeze(1)
        self.storage = self.backend.compact(self.storage, where, self.size)
        self.size = int(where.numel())

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.storage.values())

    def restore_rows(self, rows: Mapping[str, Tensor], offered: Mapping[str, torch.dtype], structure: Any) -> None:
        """Lay the storage out anew holding exactly ``rows`` (``size`` of each key, saved in their
        stored encoding) that were offered in the dtypes ``offered``; copies, never aliases, block
        by block (a saved memory may be larger than the RAM it is restored beside)."""
        for key, saved in rows.items():
            if saved.shape[0] != self.size:
                raise MemoryShapeError(f"saved memory key {key!r} has {saved.shape[0]} rows, expected {self.size}")
        self.storage, self.dtypes, self._specs, self.input_structure = {}, {}, None, structure
        for key, saved in rows.items():
            dtype = offered[key]
            self.dtypes[key] = dtype
            shape, stored = tuple(saved.shape[1:]), self._stored_dtype(key, dtype)
            self.storage[key] = self.backend.new(key, shape, stored, self.storage_device)
        self.reserve(max(self.size, self.backend.first_rows(self.capacity)))
        for key, saved in rows.items():
            stored, dtype = self.storage[key].dtype, offered[key]
            recode = is_input_key(key) and saved.dtype != stored  # saved with another input_dtype
            convert = partial(_recode, offered=dtype, stored=stored) if recode else _same
            copy_rows(self.storage[key], saved, convert, self.backend)


def _recode(block: Tensor, offered: torch.dtype, stored: torch.dtype) -> Tensor:
    """Saved input rows in this memory's encoding (they were saved with another ``input_dtype``)."""
    return encode(decode(block, offered), stored)


def _same(block: Tensor) -> Tensor:
    return block
