"""The replay memory: preallocated tensors per key, filled by an insertion policy.

Storage is one tensor per key (``inputs``, ``targets``, ``task_ids``, and metadata such as
``logits`` or ``features.layer3``), allocated on first insert from the sample shapes and kept on
the training device. ``add`` and ``sample`` are single vectorised scatters and gathers, and the
whole memory saves as a handful of tensors: there is no per-sample object, file or Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from retentive.errors import MemoryShapeError
from retentive.memory.policies import InsertionPolicy, ReservoirPolicy

#: Keys every memory stores; everything else is metadata a component asked for.
CORE_KEYS = ("inputs", "targets", "task_ids")


@dataclass
class MemoryBatch:
    """Samples drawn from memory: their slot indices and one tensor per stored key."""

    indices: Tensor
    data: dict[str, Tensor] = field(default_factory=dict)

    @property
    def inputs(self) -> Tensor:
        return self.data["inputs"]

    @property
    def targets(self) -> Tensor:
        return self.data["targets"]

    @property
    def task_ids(self) -> Tensor:
        return self.data["task_ids"]

    def __len__(self) -> int:
        return int(self.indices.numel())


class ReplayBuffer:
    """A fixed-capacity sample memory.

    Args:
        capacity: the number of samples kept (0 disables the memory).
        policy: chooses slots for incoming samples; reservoir by default.
        seed: seeds the buffer's own generator, so insertion and sampling are reproducible and
            independent of the global RNG. The generator state is part of ``state_dict``.
    """

    def __init__(self, capacity: int, policy: InsertionPolicy | None = None, seed: int = 0) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise ValueError(f"memory capacity must be an int >= 0, got {capacity!r}")
        self.capacity = capacity
        self.policy: InsertionPolicy = policy or ReservoirPolicy()
        self.generator = torch.Generator().manual_seed(seed)
        self.storage: dict[str, Tensor] = {}
        self.size = 0
        self.seen = 0
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return self.size

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.storage)

    def to(self, device: torch.device | str) -> ReplayBuffer:
        """Move the storage to ``device`` (the training device); the generator stays on the CPU."""
        self.device = torch.device(device)
        self.storage = {k: v.to(self.device) for k, v in self.storage.items()}
        return self

    def _allocate(self, batch: dict[str, Tensor]) -> None:
        for key, value in batch.items():
            self.storage[key] = torch.zeros(
                (self.capacity, *value.shape[1:]), dtype=value.dtype, device=self.device
            )

    def _check(self, batch: dict[str, Tensor]) -> int:
        sizes = {key: int(value.shape[0]) for key, value in batch.items()}
        if len(set(sizes.values())) != 1:
            raise MemoryShapeError(f"memory batch keys disagree on the batch size: {sizes}")
        if self.storage and set(batch) != set(self.storage):
            raise MemoryShapeError(
                f"memory holds keys {sorted(self.storage)} but the batch has {sorted(batch)}"
            )
        for key, value in batch.items():
            stored = self.storage.get(key)
            if stored is not None and (value.shape[1:] != stored.shape[1:] or value.dtype != stored.dtype):
                raise MemoryShapeError(
                    f"memory key {key!r} holds samples of shape {tuple(stored.shape[1:])} and dtype "
                    f"{stored.dtype}, got shape {tuple(value.shape[1:])} and dtype {value.dtype}"
                )
        return next(iter(sizes.values()))

    def add(self, batch: dict[str, Tensor]) -> Tensor:
        """Offer a batch to the memory; return the slots written (one per accepted sample).

        Every key must have the same leading batch size; on the first insert the storage is
        allocated from these shapes and dtypes, afterwards they must match.
        """
        if self.capacity == 0:
            n = self._check(batch)
            self.seen += n
            return torch.empty(0, dtype=torch.int64)
        n = self._check(batch)
        if not self.storage:
            self._allocate(batch)
        stored_targets = self.storage["targets"][: self.size] if "targets" in self.storage else None
        source, slots = self.policy.select(
            n, self.seen, self.size, self.capacity, batch.get("targets"), stored_targets, self.generator
        )
        if slots.numel():
            src = source.to(self.device)
            dst = slots.to(self.device)
            for key, value in batch.items():
                self.storage[key][dst] = value.detach().to(self.device)[src]
            self.size = max(self.size, int(slots.max()) + 1)
        self.seen += n
        return slots

    def sample(self, n: int) -> MemoryBatch | None:
        """Draw ``min(n, len(self))`` distinct samples uniformly; ``None`` when empty or ``n == 0``."""
        k = min(n, self.size)
        if k <= 0:
            return None
        if k == self.size:
            idx = torch.randperm(self.size, generator=self.generator)
        else:
            # k distinct indices: the top-k of uniform noise is a uniform k-subset.
            idx = torch.rand(self.size, generator=self.generator).topk(k).indices
        idx = idx.to(self.device)
        return MemoryBatch(indices=idx, data={key: value[idx] for key, value in self.storage.items()})

    def refresh(self, indices: Tensor, key: str, new: Tensor, gamma: float) -> None:
        """EMA-refresh stored metadata for the samples just replayed: ``m <- gamma*m + (1-gamma)*new``."""
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"ema gamma must lie in [0, 1], got {gamma}")
        if gamma == 1.0 or indices.numel() == 0:
            return
        stored = self.storage[key]
        stored[indices] = (gamma * stored[indices] + (1.0 - gamma) * new.detach().to(stored.dtype)).to(
            stored.dtype
        )

    def class_counts(self, num_classes: int | None = None) -> Tensor:
        """How many stored samples carry each target (for the TensorBoard histogram and inspect)."""
        if self.size == 0 or "targets" not in self.storage:
            return torch.zeros(num_classes or 0, dtype=torch.int64)
        return torch.bincount(self.storage["targets"][: self.size].long().cpu(), minlength=num_classes or 0)

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.storage.values())

    def state_dict(self) -> dict[str, object]:
        """Tensors and plain values only: only the filled rows, contiguous, on the CPU."""
        return {
            "capacity": self.capacity,
            "policy": self.policy.name,
            "size": self.size,
            "seen": self.seen,
            "generator": self.generator.get_state(),
            "storage": {k: v[: self.size].detach().cpu().contiguous().clone() for k, v in self.storage.items()},
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        capacity = int(state["capacity"])  # type: ignore[arg-type]
        if capacity != self.capacity:
            raise MemoryShapeError(
                f"the saved memory has capacity {capacity} but this updater was built with "
                f"memory_size={self.capacity}"
            )
        self.size = int(state["size"])  # type: ignore[arg-type]
        self.seen = int(state["seen"])  # type: ignore[arg-type]
        self.generator.set_state(state["generator"])  # type: ignore[arg-type]
        storage: dict[str, Tensor] = state["storage"]  # type: ignore[assignment]
        self.storage = {}
        for key, rows in storage.items():
            if rows.shape[0] != self.size:
                raise MemoryShapeError(f"saved memory key {key!r} has {rows.shape[0]} rows, expected {self.size}")
            full = torch.zeros((self.capacity, *rows.shape[1:]), dtype=rows.dtype, device=self.device)
            full[: self.size] = rows.to(self.device)
            self.storage[key] = full
