"""The replay memory: tensors per key, filled by an insertion policy.

Storage is one tensor per key (``inputs``, ``targets``, ``task_ids``, and metadata such as
``logits`` or ``features.layer3``), laid out on first insert from the sample shapes and kept on
the training device. It is allocated as the memory fills: each key's tensor holds
:attr:`ReplayBuffer.allocated` rows, grown geometrically (doubling, capped at the capacity) when a
write needs more, each growth checked first against the device's budget
(:mod:`retentive.memory.budget`), so ``memory_size=10**7`` costs only the rows filled.

Nested inputs (a dict/tuple/list of tensors, e.g. tokenised text) are stored as one tensor per leaf, ``inputs.input_ids`` and ``inputs.attention_mask`` (see
:mod:`retentive.memory.layout`), and :meth:`ReplayBuffer.sample` gives them back in the structure
they were offered in. ``add`` and ``sample`` are single vectorised scatters and gathers, and the
whole memory saves as a handful of tensors: there is no per-sample object, file or Python loop.

Floating input leaves may be stored compactly (``input_dtype``, see
:mod:`retentive.memory.compact`; integer leaves such as token ids are stored as given); metadata
such as logits and features are stored in the dtype they are offered in, which the Learner makes
float32 whatever the training precision.

Under data parallelism every rank holds an identical replica: :mod:`retentive.memory.exchange`
drives :meth:`ReplayBuffer.choose_slots` and :meth:`ReplayBuffer.write` with the samples of all
ranks, and :meth:`ReplayBuffer.sample` gives each rank its own share of one draw.

:class:`ReplayBuffer` is the tensor backend of :class:`~retentive.memory.protocol.ReplayMemory`;
code outside this package reads and rewrites it only through that protocol. (Over 400 lines on
purpose: layout, growth, the draw and the state format share the storage's invariants.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from retentive.data import nested
from retentive.errors import MemoryShapeError
from retentive.memory.budget import budget_error, check_growth, fits, grown_storage, nbytes
from retentive.memory.compact import decode, dtype_from_name, dtype_name, encode, parse_input_dtype
from retentive.memory.layout import INPUTS, Spec, batch_size, check_rows, flat_rows, is_input_key
from retentive.memory.policies import ReservoirPolicy
from retentive.memory.protocol import InsertionPolicy, missing_policy_members
from retentive.streams import memory_seeds

#: Keys every memory stores; everything else is metadata a component asked for.
CORE_KEYS = ("inputs", "targets", "task_ids")


@dataclass
class MemoryBatch:
    """Samples drawn from memory: their slot indices and one value per stored key.

    ``data["inputs"]`` (also :attr:`inputs`) is in the structure the inputs were offered in: a
    tensor, or the same dict/tuple/list of tensors, each leaf ``(k, ...)``, in the offered dtype.
    Every other key is one ``(k, ...)`` tensor.
    """

    indices: Tensor
    data: dict[str, Any] = field(default_factory=dict)

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
            :meth:`sample` returns them in the dtype they were offered in. For nested inputs
            this applies to each floating leaf; integer leaves (token ids, masks) are stored as
            given.
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
        self.seen = 0
        self.device = torch.device("cpu")

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

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.storage)

    def to(self, device: torch.device | str) -> ReplayBuffer:
        """Move the storage to ``device`` (the training device); the generator stays on the CPU."""
        self.device = torch.device(device)
        self.storage = {k: v.to(self.device) for k, v in self.storage.items()}
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

        No row is allocated yet: :meth:`write` grows the storage as slots are filled.
        """
        self.input_structure = nested.structure(batch[INPUTS]) if INPUTS in batch else None
        self._specs = None
        for key, value in flat_rows(batch).items():
            self.dtypes[key] = value.dtype
            self.storage[key] = torch.zeros(
                (0, *value.shape[1:]), dtype=self._stored_dtype(key, value.dtype), device=self.device
            )

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
        check_growth(self.storage, min(rows, self.capacity), self.capacity, self.device)

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` filled slots: every key's storage grows on its device and dtype to
        ``max(rows, 2 * allocated)`` rows, capped at the capacity, keeping the rows it holds.

        Raises :class:`~retentive.memory.budget.MemoryBudgetError` naming the bytes needed and
        available, the memory unchanged, when even ``rows`` rows do not fit the device's budget.
        """
        if rows > self.allocated and self.storage:
            self.storage.update(grown_storage(self.storage, min(rows, self.capacity), self.capacity, self.device))

    def encode(self, rows: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Flat rows (storage keys) as they are stored (compact inputs), on the memory's device."""
        return {
            key: encode(value.detach().to(self.device), self._stored_dtype(key, value.dtype))
            for key, value in rows.items()
        }

    def choose_slots(self, n: int, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        """The policy's ``(source, slots)`` for ``n`` samples offered after the ``seen`` so far."""
        stored_targets = self.storage["targets"][: self.size] if "targets" in self.storage else None
        return self.policy.select(
            n, self.seen, self.size, self.capacity, targets, stored_targets, self.insert_generator
        )

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
        dst = slots.to(self.device)
        for key, value in rows.items():
            self.storage[key][dst] = value
        if size is not None:
            self.size = size

    def replace(self, rows: Mapping[str, Any], offered: int = 0) -> None:
        """Make ``rows`` the memory's whole content, in slots ``0..n-1``; count ``offered`` samples seen.

        The one way to rewrite a memory (update-end selection, iCaRL's exemplars, the per-task
        episodic memories). ``rows`` is a batch as :meth:`add` takes it, inputs in their offered
        structure and dtype; once the memory is laid out it must hold exactly the stored keys,
        each cast to the dtype that key was first offered in. Raises ``ValueError`` (more rows
        than the capacity) or :class:`MemoryShapeError` (other keys), the memory unchanged.
        """
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
        flat, n = self.prepare(batch)
        if self.capacity == 0:
            self.seen += n
            return torch.empty(0, dtype=torch.int64)
        if not self.storage:
            self.allocate(batch)
        source, slots = self.choose_slots(n, flat.get("targets"))
        if slots.numel():
            src = source.to(self.device)
            # a policy that fills free slots first (all built in) leaves min(capacity, size + n) filled
            size = min(self.capacity, self.size + n) if self.policy.fills_free_slots_first else None
            self.write(
                self.encode({key: value.detach().to(self.device)[src] for key, value in flat.items()}), slots, size
            )
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
            idx = torch.stack([torch.randperm(self.size, generator=self.sample_generator) for _ in range(world_size)])[
                rank
            ]
        else:
            idx = torch.rand(world_size, self.size, generator=self.sample_generator).topk(k, dim=1).indices[rank]
        idx = idx.to(self.device)
        return MemoryBatch(indices=idx, data=self._gather(idx))

    def _gather(self, idx: Tensor | slice) -> dict[str, Any]:
        """The rows ``idx`` of every key, inputs decoded and rebuilt in their offered structure."""
        data: dict[str, Any] = {}
        leaves: dict[str, Tensor] = {}
        self.specs()  # the input keys, once per layout
        for key, value in self.storage.items():
            if key in self._input_keys:
                leaves[key] = decode(value[idx], self.dtypes[key])
            else:
                data[key] = value[idx]
        if leaves:
            data[INPUTS] = nested.unflatten(leaves, self.input_structure, INPUTS)
        return data

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
        stored = self.storage[key]
        stored[indices] = (gamma * stored[indices] + (1.0 - gamma) * new.detach().to(stored.dtype)).to(stored.dtype)

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
        Nested inputs add ``input_structure`` (plain dicts, lists and ``None``, see
        :func:`retentive.data.nested.structure`) beside their per-leaf storage keys; plain-tensor
        inputs are stored exactly as before nested inputs existed (the one key ``inputs``).
        """
        state: dict[str, object] = {
            "capacity": self.capacity,
            "policy": self.policy.name,
            "size": self.size,
            "seen": self.seen,
            "generators": {"insert": self.insert_generator.get_state(), "sample": self.sample_generator.get_state()},
            "storage": {k: v[: self.size].detach().cpu().contiguous().clone() for k, v in self.storage.items()},
            "dtypes": {k: dtype_name(v) for k, v in self.dtypes.items()},
        }
        policy_state = self.policy.state_dict()
        if policy_state:  # a stateless policy saves none (as before policies declared state_dict)
            state["policy_state"] = policy_state
        if self.input_structure is not None:
            state["input_structure"] = self.input_structure
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore a :meth:`state_dict`: only the saved rows are allocated (the storage grows as it
        fills again), after checking they fit the device's budget."""
        capacity = int(state["capacity"])  # type: ignore[call-overload]
        if capacity != self.capacity:
            raise MemoryShapeError(
                f"the saved memory has capacity {capacity} but this updater was built with memory_size={self.capacity}"
            )
        size = int(state["size"])  # type: ignore[call-overload]
        if not 0 <= size <= capacity:
            raise MemoryShapeError(f"the saved memory holds {size} samples, outside [0, its capacity {capacity}]")
        storage: dict[str, Tensor] = state["storage"]  # type: ignore[assignment]
        needed = sum(nbytes(rows) for rows in storage.values())
        ok, available = fits(needed, self.device)
        if not ok:
            raise budget_error(needed, available, self.device, f"the {size:,} saved samples")
        self.size = size
        self.seen = int(state["seen"])  # type: ignore[call-overload]
        generators = state.get("generators")
        if generators is None:  # written before the streams were split: one generator served both
            generators = {"insert": state["generator"], "sample": state["generator"]}
        self.insert_generator.set_state(generators["insert"])  # type: ignore[index]
        self.sample_generator.set_state(generators["sample"])  # type: ignore[index]
        self.policy.load_state_dict(state.get("policy_state") or {})  # type: ignore[arg-type]  # absent: fresh
        # folders written before compact inputs existed store every key as offered
        offered: dict[str, str] = state.get("dtypes") or {k: dtype_name(v.dtype) for k, v in storage.items()}  # type: ignore[assignment]
        structure = state.get("input_structure")
        _check_saved_inputs(list(storage), structure)
        self.storage = {}
        self.dtypes = {}
        self._specs = None
        self.input_structure = structure
        for key, rows in storage.items():
            if rows.shape[0] != self.size:
                raise MemoryShapeError(f"saved memory key {key!r} has {rows.shape[0]} rows, expected {self.size}")
            dtype = dtype_from_name(offered[key])
            if is_input_key(key):  # the saved encoding may differ from this buffer's input_dtype
                rows = encode(decode(rows, dtype), self._stored_dtype(key, dtype))
            self.dtypes[key] = dtype
            held = torch.empty((self.size, *rows.shape[1:]), dtype=self._stored_dtype(key, dtype), device=self.device)
            self.storage[key] = held.copy_(rows)  # a copy: never an alias of the saved tensors


def _check_saved_inputs(keys: list[str], structure: Any) -> None:
    """The saved input leaves must be exactly those the saved structure names."""
    saved = sorted(k for k in keys if is_input_key(k))
    if not saved:
        return
    try:
        expected = sorted(nested.paths(structure, INPUTS))
    except ValueError as error:
        raise MemoryShapeError(f"the saved memory's input structure is not valid: {error}") from None
    if saved != expected:
        raise MemoryShapeError(f"the saved memory stores the input leaves {saved} but its structure names {expected}")
