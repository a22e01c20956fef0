"""The replay memory: tensors per key, filled by an insertion policy.

:class:`ReplayBuffer` is the tensor backend of :class:`~retentive.memory.protocol.ReplayMemory`:
its rows live in a :class:`~retentive.memory.storage.TensorStorage` (one tensor per key, grown as
it fills, inputs compact if asked), its policy chooses the slots, and its state is the format of
:mod:`retentive.memory.persistence`. ``add`` and ``sample`` are single vectorised scatters and
gathers, and the whole memory saves as a handful of tensors: there is no per-sample object, file
or Python loop. Metadata such as logits and features are stored in the dtype they are offered in,
which the Learner makes float32 whatever the training precision.

Under data parallelism every rank holds an identical replica: :mod:`retentive.memory.exchange`
drives :meth:`ReplayBuffer.choose_slots` and :meth:`ReplayBuffer.write` with the samples of all
ranks, and :meth:`ReplayBuffer.sample` gives each rank its own share of one draw. Code outside
this package reads and rewrites it only through the protocol.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from retentive.data.transfer import to_device
from retentive.errors import MemoryShapeError, SampleNotFoundError
from retentive.memory.backends import DEFAULT_BACKEND
from retentive.memory.compact import decode
from retentive.memory.identity import ID_KEY, SourceTable
from retentive.memory.layout import INPUTS, batch_size, flat_rows, is_input_key
from retentive.memory.persistence import buffer_state, load_buffer_state
from retentive.memory.policies import ReservoirPolicy
from retentive.memory.protocol import InsertionPolicy, missing_policy_members
from retentive.memory.storage import TensorStorage
from retentive.streams import memory_seeds

#: Keys every memory stores; everything else is metadata a component asked for.
CORE_KEYS = ("inputs", "targets", "task_ids")


@dataclass
class MemoryBatch:
    """Samples drawn from memory: their slot indices and one value per stored key.

    ``data["inputs"]`` (also :attr:`inputs`) is in the structure the inputs were offered in: a
    tensor, or the same dict/tuple/list of tensors, each leaf ``(k, ...)``, in the offered dtype.
    Every other key is one ``(k, ...)`` tensor. ``model_targets``: the targets are a model's
    predictions (a generative memory labels its replay with the classifier), so they are in the
    label space the model trains in already and the Learner gives them no ``buffer_target_transform``;
    stored targets are raw, as offered, and get it.
    """

    indices: Tensor
    data: dict[str, Any] = field(default_factory=dict)
    model_targets: bool = False

    @property
    def inputs(self) -> Any:
        return self.data["inputs"]

    @property
    def targets(self) -> Tensor:
        return self.data["targets"]

    @property
    def task_ids(self) -> Tensor:
        return self.data["task_ids"]

    def __len__(self) -> int:
        return int(self.indices.numel())


class ReplayBuffer(TensorStorage):
    """A fixed-capacity sample memory.

    Args:
        capacity: the number of samples kept (0 disables the memory).
        policy: chooses slots for incoming samples; reservoir by default.
        seed: seeds the buffer's two generators (insertion decisions and replay draws, each its
            own stream, see :mod:`retentive.streams`), so both are reproducible and independent
            of the global RNG and of each other. An updater re-seeds them at the start of every
            update with :meth:`reseed`; their states are part of ``state_dict``.
        input_dtype: store the inputs compactly: ``"uint8"`` (exact for images ``k/255``),
            ``"float16"`` or ``"bfloat16"``; ``None`` (default) stores them as offered.
            :meth:`sample` returns them in the dtype they were offered in. For nested inputs
            this applies to each floating leaf; integer leaves (token ids, masks) are stored as
            given.
        backend: where the rows reside (:mod:`retentive.memory.backends`): ``"grown"`` (default,
            on the device, allocated as it fills), ``"tensor"`` (on the device, the whole
            capacity at once) or ``"disk"`` (memory-mapped files, resident size bounded).
        directory: the ``"disk"`` backend's scratch folder (``None``: the system's temporary folder).
    """

    def __init__(
        self,
        capacity: int,
        policy: InsertionPolicy | None = None,
        seed: int = 0,
        input_dtype: str | torch.dtype | None = None,
        backend: str = DEFAULT_BACKEND,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise ValueError(f"memory capacity must be an int >= 0, got {capacity!r}")
        super().__init__(capacity, input_dtype, backend, directory)
        chosen = ReservoirPolicy() if policy is None else policy
        if not isinstance(chosen, InsertionPolicy):
            raise TypeError(
                f"memory policy {type(chosen).__name__} lacks the InsertionPolicy members "
                f"{missing_policy_members(chosen)}; subclass retentive.memory.PolicyDefaults for their defaults"
            )
        self.policy: InsertionPolicy = chosen
        self.policy.check(capacity)  # e.g. a class-balanced memory smaller than its classes
        self.insert_generator = torch.Generator()
        self.sample_generator = torch.Generator()
        self.reseed(*memory_seeds(seed, 0))
        self.seen = 0
        #: the chunks the rows came from (:mod:`retentive.memory.identity`), saved with the memory
        self.sources = SourceTable()

    def __len__(self) -> int:
        return self.size

    @property
    def takes_samples(self) -> bool:
        """A memory of capacity 0 is off: the Learner only counts what it would have offered."""
        return self.capacity > 0

    def reseed(self, insert_seed: int, sample_seed: int) -> None:
        """Restart the insertion and the replay-draw streams (done by the updater per update)."""
        self.insert_generator.manual_seed(insert_seed)
        self.sample_generator.manual_seed(sample_seed)

    def choose_slots(self, n: int, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        """The policy's ``(source, slots)`` for ``n`` samples offered after the ``seen`` so far."""
        stored_targets = self.storage["targets"][: self.size] if "targets" in self.storage else None
        return self.policy.select(
            n, self.seen, self.size, self.capacity, targets, stored_targets, self.insert_generator
        )

    def replace(self, rows: Mapping[str, Any], offered: int = 0) -> None:
        """Make ``rows`` the memory's whole content, in slots ``0..n-1``; count ``offered`` samples seen.

        The one way to rewrite a memory (update-end selection, iCaRL's exemplars, the per-task
        episodic memories). ``rows`` is a batch as :meth:`add` takes it, inputs in their offered
        structure and dtype; once the memory is laid out it must hold exactly the stored keys,
        each cast to the dtype that key was first offered in. Raises ``ValueError`` (more rows
        than the capacity) or :class:`MemoryShapeError` (other keys), the memory unchanged.
        """
        if rows:
            rows = self.identify(rows)
        flat = flat_rows(rows)
        n = batch_size(flat) if flat else 0
        if n > self.capacity:
            raise ValueError(f"{n} rows do not fit a memory of {self.capacity}")
        if n and self.storage and set(flat) != set(self.storage):
            raise MemoryShapeError(
                f"a rewrite of the memory must hold its keys {sorted(self.storage)}, got {sorted(flat)}"
            )
        self.seen += int(offered)
        if n == 0:
            return
        if not self.storage:
            self.allocate(rows)
        encoded = self.encode({key: value.to(self.dtypes[key]) for key, value in flat.items()})
        self.write(encoded, torch.arange(n), size=n)  # the storage grows to n rows if needed

    def add(self, batch: Mapping[str, Any]) -> Tensor:
        """Offer a batch to the memory; return the slots written (one per accepted sample).

        ``batch["inputs"]`` is a tensor or a nested dict/tuple/list of tensors. Every key and input
        leaf must have the same leading batch size; on the first insert the storage is allocated
        from these shapes and dtypes, afterwards they must match (nothing is written otherwise).
        """
        if self.capacity == 0:
            self.seen += self.prepare(batch)[1]
            return torch.empty(0, dtype=torch.int64)
        batch = self.identify(batch)
        flat, n = self.prepare(batch)
        if not self.storage:
            self.allocate(batch)
        source, slots = self.choose_slots(n, flat.get("targets"))
        if slots.numel():
            src = to_device(source, self.device)  # no host sync on a GPU (retentive.data.transfer)
            # a policy that fills free slots first (all built in) leaves min(capacity, size + n) filled
            size = min(self.capacity, self.size + n) if self.policy.fills_free_slots_first else None
            self.write(
                self.encode({key: value.detach().to(self.device)[src] for key, value in flat.items()}), slots, size
            )
        self.seen += n
        return slots

    def identify(self, batch: Mapping[str, Any]) -> Mapping[str, Any]:
        """``batch`` with its sample identity keys (:meth:`SourceTable.complete`)."""
        return self.sources.complete(batch, self.seen)

    def begin_source(self, fingerprint: str, update: int, provided: Tensor | None = None) -> None:
        """Credit the rows offered from now on to chunk ``fingerprint`` of update ``update``
        (``provided``: the chunk's own sample ids, one per row)."""
        self.sources.begin(fingerprint, update, provided)

    def chunk_identity(self, rows: Tensor) -> dict[str, Tensor]:
        """The identity keys of rows ``rows`` of the current chunk (for a rewrite holding them)."""
        return self.sources.chunk_identity(rows)

    def sample_ids(self) -> Tensor:
        """The id of the sample in each filled slot (int64, slot order)."""
        if ID_KEY not in self.storage:
            return torch.zeros(0, dtype=torch.int64)
        return self.storage[ID_KEY][: self.size]

    def source_entries(self) -> list[dict[str, Any]]:
        """The sources rows point to (``sample_sources`` indexes this list)."""
        return self.sources.state_dict()

    def delete(self, ids: Tensor | Sequence[int]) -> int:
        """Remove every row holding one of the sample ``ids``; return the rows removed.

        The storage is compacted (the rows after a removed one move up), so nothing of a removed
        sample stays in the tensors or in a state saved from them. An id the memory does not hold
        raises :class:`~retentive.errors.SampleNotFoundError` naming it, and nothing is removed.
        """
        wanted = torch.as_tensor(ids if torch.is_tensor(ids) else list(ids), dtype=torch.int64).flatten().cpu()
        held = self.sample_ids().cpu()
        missing = wanted[~torch.isin(wanted, held)].unique()
        if missing.numel():
            shown = ", ".join(str(int(i)) for i in missing[:10]) + (" ..." if missing.numel() > 10 else "")
            raise SampleNotFoundError(
                f"the memory holds no sample with id {shown} ({missing.numel()} of {wanted.unique().numel()} "
                "ids not found); nothing was deleted",
                tuple(int(i) for i in missing),
            )
        keep = ~torch.isin(held, wanted)
        removed = int((~keep).sum())
        if removed:
            self.compact(keep)
            self.policy.rows_removed(keep, self.capacity)  # a policy's per-slot state follows the rows
        return removed

    def sample(self, n: int, rank: int = 0, world_size: int = 1) -> MemoryBatch | None:
        """Draw ``min(n, len(self))`` distinct samples uniformly; ``None`` when empty or ``n == 0``.

        Under data parallelism every rank calls this with its ``rank`` and makes the same draw, so
        the replay generator stays identical everywhere: the ``world_size * k`` samples of one uniform
        draw are split between the ranks, which replay disjoint samples (as one process with the
        ranks' batches together would). A memory too small for that gives each rank its own
        independent uniform ``k``-subset.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        k = min(n, self.size)
        if k <= 0:
            return None
        if world_size * k <= self.size:
            total = world_size * k
            if total == self.size:
                order = torch.randperm(self.size, generator=self.sample_generator)
            else:
                # the top-k of uniform noise is a uniform k-subset, in uniformly random order
                order = torch.rand(self.size, generator=self.sample_generator).topk(total).indices
            idx = order[rank * k : (rank + 1) * k]
        elif k == self.size:
            idx = torch.stack([torch.randperm(self.size, generator=self.sample_generator) for _ in range(world_size)])[
                rank
            ]
        else:
            idx = torch.rand(world_size, self.size, generator=self.sample_generator).topk(k, dim=1).indices[rank]
        data = self._gather(idx)  # from the CPU indices: a disk-backed memory reads its rows there
        return MemoryBatch(indices=to_device(idx, self.device), data=data)

    def gather(self, indices: Tensor) -> MemoryBatch:
        """The samples in slots ``indices``, inputs decoded (in their offered structure)."""
        idx = indices.to(self.device)
        return MemoryBatch(indices=idx, data=self._gather(idx))

    def rows(self, start: int, stop: int) -> MemoryBatch:
        """The filled slots ``start:stop`` in order, inputs decoded (update-level passes read these)."""
        stop = min(stop, self.size)
        idx = torch.arange(start, stop, device=self.device)
        return MemoryBatch(indices=idx, data=self._gather(slice(start, stop)))

    def decoded(self, key: str) -> Any:
        """The filled rows of ``key`` in the dtype they were offered in (inputs decoded).

        ``"inputs"`` gives the inputs in their offered structure (a tensor, or nested leaves);
        a leaf's storage key (``"inputs.input_ids"``) gives that leaf alone.
        """
        if key == INPUTS and INPUTS not in self.storage:
            return self._gather(slice(0, self.size))[INPUTS]
        rows = self.storage[key][: self.size]
        return decode(rows, self.dtypes[key]) if is_input_key(key) else rows

    def refresh(self, indices: Tensor, key: str, new: Tensor, gamma: float) -> None:
        """EMA-refresh stored metadata for the samples just replayed: ``m <- gamma*m + (1-gamma)*new``."""
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"ema gamma must lie in [0, 1], got {gamma}")
        if gamma == 1.0 or indices.numel() == 0:
            return
        stored, at = self.storage[key], to_device(indices, self.storage_device)
        fresh = new.detach().to(self.storage_device, stored.dtype)
        stored[at] = (gamma * stored[at] + (1.0 - gamma) * fresh).to(stored.dtype)
        self.backend.accessed(2 * int(at.numel()))

    def class_counts(self, num_classes: int | None = None) -> Tensor:
        """How many stored samples carry each target (for the TensorBoard histogram and inspect)."""
        if self.size == 0 or "targets" not in self.storage:
            return torch.zeros(num_classes or 0, dtype=torch.int64)
        return torch.bincount(self.storage["targets"][: self.size].long().cpu(), minlength=num_classes or 0)

    def state_dict(self) -> dict[str, object]:
        """Tensors and plain values only (:func:`retentive.memory.persistence.buffer_state`)."""
        return buffer_state(self)

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a :meth:`state_dict` (:func:`retentive.memory.persistence.load_buffer_state`)."""
        load_buffer_state(self, state)
