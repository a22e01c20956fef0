"""The replay memory: preallocated tensors per key, filled by an insertion policy.

Storage is one tensor per key (``inputs``, ``targets``, ``task_ids``, and metadata such as
``logits`` or ``features.layer3``), allocated on first insert from the sample shapes and kept on
the training device. ``add`` and ``sample`` are single vectorised scatters and gathers, and the
whole memory saves as a handful of tensors: there is no per-sample object, file or Python loop.

Inputs may be stored compactly (``input_dtype``, see :mod:`retentive.memory.compact`); metadata
such as logits and features are stored in the dtype they are offered in, which the Learner makes
float32 whatever the training precision.

Under data parallelism every rank holds an identical replica: :mod:`retentive.memory.exchange`
drives :meth:`ReplayBuffer.choose_slots` and :meth:`ReplayBuffer.write` with the samples of all
ranks, and :meth:`ReplayBuffer.sample` gives each rank its own share of one draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from retentive.errors import MemoryShapeError
from retentive.memory.compact import decode, dtype_from_name, dtype_name, encode, parse_input_dtype
from retentive.memory.policies import InsertionPolicy, ReservoirPolicy
from retentive.streams import memory_seeds

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
        seed: seeds the buffer's two generators (insertion decisions and replay draws, each its
            own stream, see :mod:`retentive.streams`), so both are reproducible and independent
            of the global RNG and of each other. An updater re-seeds them at the start of every
            update with :meth:`reseed`; their states are part of ``state_dict``.
        input_dtype: store the inputs compactly: ``"uint8"`` (exact for images ``k/255``),
            ``"float16"`` or ``"bfloat16"``; ``None`` (default) stores them as offered.
            :meth:`sample` returns them in the dtype they were offered in.
    """

    def __init__(
        self,
        capacity: int,
        policy: InsertionPolicy | None = None,
        seed: int = 0,
        input_dtype: str | torch.dtype | None = None,
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise ValueError(f"memory capacity must be an int >= 0, got {capacity!r}")
        self.capacity = capacity
        self.policy: InsertionPolicy = policy or ReservoirPolicy()
        self.insert_generator = torch.Generator()
        self.sample_generator = torch.Generator()
        self.reseed(*memory_seeds(seed, 0))
        self.input_dtype = parse_input_dtype(input_dtype)
        self.storage: dict[str, Tensor] = {}
        #: the dtype each key is offered and sampled in (the storage differs for compact inputs)
        self.dtypes: dict[str, torch.dtype] = {}
        self.size = 0
        self.seen = 0
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return self.size

    def reseed(self, insert_seed: int, sample_seed: int) -> None:
        """Restart the insertion and the replay-draw streams (done by the updater per update)."""
        self.insert_generator.manual_seed(insert_seed)
        self.sample_generator.manual_seed(sample_seed)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.storage)

    def to(self, device: torch.device | str) -> ReplayBuffer:
        """Move the storage to ``device`` (the training device); the generator stays on the CPU."""
        self.device = torch.device(device)
        self.storage = {k: v.to(self.device) for k, v in self.storage.items()}
        return self

    def spec(self, key: str) -> tuple[torch.Size, torch.dtype] | None:
        """The per-sample shape and the offered dtype of ``key``; ``None`` before the first insert."""
        stored = self.storage.get(key)
        return None if stored is None else (stored.shape[1:], self.dtypes[key])

    def _stored_dtype(self, key: str, dtype: torch.dtype) -> torch.dtype:
        return self.input_dtype if key == "inputs" and self.input_dtype is not None else dtype

    def allocate(self, batch: dict[str, Tensor]) -> None:
        """Create the storage from a batch's shapes and dtypes (done by the first insert)."""
        for key, value in batch.items():
            self.dtypes[key] = value.dtype
            self.storage[key] = torch.zeros(
                (self.capacity, *value.shape[1:]), dtype=self._stored_dtype(key, value.dtype), device=self.device
            )

    def encode(self, rows: dict[str, Tensor]) -> dict[str, Tensor]:
        """Rows as they are stored (compact inputs), on the memory's device."""
        return {
            key: encode(value.detach().to(self.device), self.input_dtype if key == "inputs" else None)
            for key, value in rows.items()
        }

    def _check(self, batch: dict[str, Tensor]) -> int:
        sizes = {key: int(value.shape[0]) for key, value in batch.items()}
        if len(set(sizes.values())) != 1:
            raise MemoryShapeError(f"memory batch keys disagree on the batch size: {sizes}")
        if self.storage and set(batch) != set(self.storage):
            raise MemoryShapeError(
                f"memory holds keys {sorted(self.storage)} but the batch has {sorted(batch)}"
            )
        for key, value in batch.items():
            spec = self.spec(key)
            if spec is not None and (value.shape[1:] != spec[0] or value.dtype != spec[1]):
                raise MemoryShapeError(
                    f"memory key {key!r} holds samples of shape {tuple(spec[0])} and dtype "
                    f"{spec[1]}, got shape {tuple(value.shape[1:])} and dtype {value.dtype}"
                )
        return next(iter(sizes.values()))

    def check(self, batch: dict[str, Tensor]) -> int:
        """The batch size of ``batch``, after checking it fits the storage (keys, shapes, dtypes)."""
        return self._check(batch)

    def choose_slots(self, n: int, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        """The policy's ``(source, slots)`` for ``n`` samples offered after the ``seen`` so far."""
        stored_targets = self.storage["targets"][: self.size] if "targets" in self.storage else None
        return self.policy.select(n, self.seen, self.size, self.capacity, targets, stored_targets, self.insert_generator)

    def write(self, rows: dict[str, Tensor], slots: Tensor, size: int | None = None) -> None:
        """Store encoded ``rows`` (see :meth:`encode`) into ``slots``, one row per slot.

        ``size`` is the filled size afterwards when the caller knows it; otherwise it is read from
        the slots (once the memory is full, never: nothing is read back from a tensor per step).
        """
        if not slots.numel():
            return
        dst = slots.to(self.device)
        for key, value in rows.items():
            self.storage[key][dst] = value
        if size is not None:
            self.size = size
        elif self.size < self.capacity:
            self.size = max(self.size, int(slots.max()) + 1)

    def add(self, batch: dict[str, Tensor]) -> Tensor:
        """Offer a batch to the memory; return the slots written (one per accepted sample).

        Every key must have the same leading batch size; on the first insert the storage is
        allocated from these shapes and dtypes, afterwards they must match.
        """
        n = self._check(batch)
        if self.capacity == 0:
            self.seen += n
            return torch.empty(0, dtype=torch.int64)
        if not self.storage:
            self.allocate(batch)
        source, slots = self.choose_slots(n, batch.get("targets"))
        if slots.numel():
            src = source.to(self.device)
            # a policy that fills free slots first (all built in) leaves min(capacity, size + n) filled
            size = min(self.capacity, self.size + n) if getattr(self.policy, "fills_free_slots_first", False) else None
            self.write(self.encode({key: value.detach().to(self.device)[src] for key, value in batch.items()}), slots, size)
        self.seen += n
        return slots

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
            idx = torch.stack([torch.randperm(self.size, generator=self.sample_generator) for _ in range(world_size)])[rank]
        else:
            idx = torch.rand(world_size, self.size, generator=self.sample_generator).topk(k, dim=1).indices[rank]
        idx = idx.to(self.device)
        data = {key: value[idx] for key, value in self.storage.items()}
        if "inputs" in data:
            data["inputs"] = decode(data["inputs"], self.dtypes["inputs"])
        return MemoryBatch(indices=idx, data=data)

    def gather(self, indices: Tensor) -> MemoryBatch:
        """The samples in slots ``indices``, inputs decoded."""
        idx = indices.to(self.device)
        data = {key: value[idx] for key, value in self.storage.items()}
        if "inputs" in data:
            data["inputs"] = decode(data["inputs"], self.dtypes["inputs"])
        return MemoryBatch(indices=idx, data=data)

    def rows(self, start: int, stop: int) -> MemoryBatch:
        """The filled slots ``start:stop`` in order, inputs decoded (update-level passes read these)."""
        stop = min(stop, self.size)
        idx = torch.arange(start, stop, device=self.device)
        data = {key: value[start:stop] for key, value in self.storage.items()}
        if "inputs" in data:
            data["inputs"] = decode(data["inputs"], self.dtypes["inputs"])
        return MemoryBatch(indices=idx, data=data)

    def decoded(self, key: str) -> Tensor:
        """The filled rows of ``key`` in the dtype they were offered in (inputs decoded)."""
        rows = self.storage[key][: self.size]
        return decode(rows, self.dtypes[key]) if key == "inputs" else rows

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
        """Tensors and plain values only: only the filled rows, contiguous, on the CPU.

        ``dtypes`` names the dtype each key was offered in; it differs from the stored tensor's
        only for compact inputs, which a buffer with another ``input_dtype`` converts on load.
        """
        return {
            "capacity": self.capacity,
            "policy": self.policy.name,
            "size": self.size,
            "seen": self.seen,
            "generators": {"insert": self.insert_generator.get_state(), "sample": self.sample_generator.get_state()},
            "storage": {k: v[: self.size].detach().cpu().contiguous().clone() for k, v in self.storage.items()},
            "dtypes": {k: dtype_name(v) for k, v in self.dtypes.items()},
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
        generators = state.get("generators")
        if generators is None:  # written before the streams were split: one generator served both
            generators = {"insert": state["generator"], "sample": state["generator"]}
        self.insert_generator.set_state(generators["insert"])  # type: ignore[index]
        self.sample_generator.set_state(generators["sample"])  # type: ignore[index]
        storage: dict[str, Tensor] = state["storage"]  # type: ignore[assignment]
        # folders written before compact inputs existed store every key as offered
        offered: dict[str, str] = state.get("dtypes") or {k: dtype_name(v.dtype) for k, v in storage.items()}  # type: ignore[assignment]
        self.storage = {}
        self.dtypes = {}
        for key, rows in storage.items():
            if rows.shape[0] != self.size:
                raise MemoryShapeError(f"saved memory key {key!r} has {rows.shape[0]} rows, expected {self.size}")
            dtype = dtype_from_name(offered[key])
            if key == "inputs":  # the saved encoding may differ from this buffer's input_dtype
                rows = encode(decode(rows, dtype), self.input_dtype)
            self.dtypes[key] = dtype
            full = torch.zeros((self.capacity, *rows.shape[1:]), dtype=self._stored_dtype(key, dtype), device=self.device)
            full[: self.size] = rows.to(self.device)
            self.storage[key] = full
