"""The declared memory interface: what a replay memory offers and what an insertion policy may have.

Everything outside :mod:`retentive.memory` uses a memory only through :class:`ReplayMemory`
(the components, the Learner, the updaters, the state code), so that another backend (a
memory-mapped one, say) is a class with these members, nothing more. :class:`ReplayBuffer`,
:class:`UnboundedBuffer` and :class:`GenerativeMemory` satisfy it
(``tests/unit/test_memory_protocol.py``).

A generative memory stores no row yet replays any number of samples and learns from every batch
offered. So the protocol does not read "is the memory on" from the capacity: ``capacity`` and
``len`` count stored rows, :attr:`ReplayMemory.takes_samples` says whether batches are offered
at all, and :meth:`ReplayMemory.sample` may give more than ``len`` samples.

An :class:`InsertionPolicy` declares every member a memory or a Learner reads from it;
:class:`PolicyDefaults` gives each optional one its documented default, so a policy writes only
what it changes. A memory refuses, when it is built, a policy lacking any member, instead of
probing for it at every use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from retentive.memory.buffer import MemoryBatch
    from retentive.memory.context import UpdateContext
    from retentive.memory.layout import Spec


@runtime_checkable
class InsertionPolicy(Protocol):
    """Chooses memory slots for incoming samples; may keep state and act at update level.

    Attributes:
        name: saved with the memory (``state_dict()["policy"]``).
        uses_targets: ``False`` promises :meth:`select` never reads ``targets``, which spares a
            distributed insert one all-gather per step.
        fills_free_slots_first: ``True`` promises slots ``size..capacity-1`` are filled before
            any is replaced, so the memory knows its size without reading the slots back.
    """

    name: str
    uses_targets: bool
    fills_free_slots_first: bool

    def select(
        self,
        n: int,
        seen: int,
        size: int,
        capacity: int,
        targets: Tensor | None,
        stored_targets: Tensor | None,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        """``(source, slots)`` as int64 CPU tensors: incoming row ``source[i]`` goes to ``slots[i]``."""
        ...

    def check(self, capacity: int, model: nn.Module | None = None) -> None:
        """Refuse a capacity (or a model) this policy cannot work with, before anything trains."""
        ...

    def attach(self, model: nn.Module, capacity: int) -> None:
        """Called once by an updater that promises to run :meth:`on_update_end` for this policy."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The policy's own state (saved with the memory as ``policy_state`` unless empty)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (``{}``: a memory saved without policy state, start fresh)."""
        ...

    def on_train_epoch_end(self, ctx: UpdateContext) -> None:
        """At the end of every training epoch (forgetting counts evaluate here)."""
        ...

    def on_update_end(self, ctx: UpdateContext) -> None:
        """After the last step of an update (update-end selection rewrites the memory here)."""
        ...

    def rows_removed(self, keep: Tensor, capacity: int) -> None:
        """After a deletion: the memory kept the filled rows where the mask ``keep`` is set and
        moved them up to slots ``0..kept-1``; a policy with per-slot state remaps it."""
        ...


class PolicyDefaults:
    """The defaults of every optional :class:`InsertionPolicy` member: targets read, no promise
    about free slots, no checks, no state, no update-level work, no per-slot state to remap. Subclass it and write ``select``."""

    name = "policy"
    uses_targets = True
    fills_free_slots_first = False

    def check(self, capacity: int, model: nn.Module | None = None) -> None:
        """Accept any capacity and model."""

    def attach(self, model: nn.Module, capacity: int) -> None:
        """Nothing to attach: an online policy works through :meth:`select` alone."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """No state to restore."""

    def on_train_epoch_end(self, ctx: UpdateContext) -> None:
        """Nothing at epoch end."""

    def on_update_end(self, ctx: UpdateContext) -> None:
        """Nothing at update end."""

    def rows_removed(self, keep: Tensor, capacity: int) -> None:
        """No per-slot state to remap after a deletion."""


class Offer(NamedTuple):
    """The arguments of :meth:`InsertionPolicy.select`, as one value."""

    n: int
    seen: int
    size: int
    capacity: int
    targets: Tensor | None
    stored_targets: Tensor | None
    generator: torch.Generator


class SlotPolicy(PolicyDefaults):
    """:class:`PolicyDefaults` with :meth:`select` written once: a subclass writes :meth:`place`,
    which receives the arguments as one :class:`Offer` (every built-in policy is one)."""

    def select(
        self,
        n: int,
        seen: int,
        size: int,
        capacity: int,
        targets: Tensor | None,
        stored_targets: Tensor | None,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        return self.place(Offer(n, seen, size, capacity, targets, stored_targets, generator))

    def place(self, offer: Offer) -> tuple[Tensor, Tensor]:
        """``(source, slots)`` for the offer, as :meth:`InsertionPolicy.select` returns them."""
        raise NotImplementedError


def missing_policy_members(policy: object) -> list[str]:
    """The :class:`InsertionPolicy` members ``policy`` lacks (empty: it satisfies the protocol)."""
    members = (
        "name",
        "uses_targets",
        "fills_free_slots_first",
        "select",
        "check",
        "attach",
        "state_dict",
        "load_state_dict",
        "on_train_epoch_end",
        "on_update_end",
        "rows_removed",
    )
    return [m for m in members if not hasattr(policy, m)]


@runtime_checkable
class ReplayMemory(Protocol):
    """A sample memory: rows of ``inputs`` (a tensor or nested), ``targets``, ``task_ids`` and
    component metadata (``logits``, ``features.<layer>``), filled by an :class:`InsertionPolicy`.

    Reading is by row (:meth:`sample`, :meth:`gather`, :meth:`rows`) or by key (:meth:`decoded`);
    writing is by :meth:`add` (the policy decides), :meth:`refresh` (metadata of rows replayed)
    and :meth:`replace` (an update-end rewrite of the whole content). ``state_dict`` holds
    tensors and plain values only, and one format serves every backend.

    Every row carries its sample identity as three ordinary int64 keys (``sample_ids``,
    ``sample_sources``, ``sample_rows``; :mod:`retentive.memory.identity`), filled in by
    :meth:`add` and :meth:`replace` when a batch lacks them; :meth:`delete` removes rows by id.
    """

    #: the most rows stored
    capacity: int
    #: samples ever offered (kept or not); the Learner counts them itself while the memory is off
    seen: int
    policy: InsertionPolicy
    device: torch.device
    #: the containers of nested inputs (``None`` for a plain tensor or before the first insert)
    input_structure: Any
    #: the insertion stream: draws a rewrite makes with it are the same on every replica
    insert_generator: torch.Generator

    def __len__(self) -> int:
        """The rows stored (readable with :meth:`rows`, :meth:`gather` and :meth:`decoded`)."""
        ...

    @property
    def takes_samples(self) -> bool:
        """Whether the Learner offers batches to :meth:`add` and runs the policy's hooks; ``False``
        (a sample memory of capacity 0): it only counts the samples in :attr:`seen`."""
        ...

    @property
    def keys(self) -> tuple[str, ...]:
        """The stored keys (one per input leaf: ``inputs`` or ``inputs.<path>``; then metadata)."""
        ...

    def to(self, device: torch.device | str) -> ReplayMemory: ...

    def reseed(self, insert_seed: int, sample_seed: int) -> None: ...

    def specs(self) -> dict[str, Spec]:
        """Every stored key's per-sample ``(shape, offered dtype)``; empty before the first insert."""
        ...

    def check_room(self, rows: int) -> None:
        """Raise ``MemoryBudgetError`` if ``rows`` filled rows would not fit the device's budget."""
        ...

    def add(self, batch: Mapping[str, Any]) -> Tensor:
        """Offer a batch; return the slots written."""
        ...

    def sample(self, n: int, rank: int = 0, world_size: int = 1) -> MemoryBatch | None:
        """Up to ``n`` samples to replay (``rank``'s share of one draw), ``None`` when there is none."""
        ...

    def gather(self, indices: Tensor) -> MemoryBatch: ...

    def rows(self, start: int, stop: int) -> MemoryBatch: ...

    def decoded(self, key: str) -> Any:
        """The filled rows of ``key`` in their offered dtype (a read-only view: do not write to it)."""
        ...

    def refresh(self, indices: Tensor, key: str, new: Tensor, gamma: float) -> None: ...

    def replace(self, rows: Mapping[str, Any], offered: int = 0) -> None:
        """Make ``rows`` (a batch as :meth:`add` takes it) the whole content, in slots ``0..n-1``."""
        ...

    def class_counts(self, num_classes: int | None = None) -> Tensor: ...

    def nbytes(self) -> int: ...

    # ------------------------------------------------------------ sample identity (retentive.memory.identity)
    def begin_source(self, fingerprint: str, update: int, provided: Tensor | None = None) -> None:
        """Credit the rows offered from now on to chunk ``fingerprint`` of update ``update``;
        ``provided``: the chunk's own sample ids, one per row (``None``: ids derived from the
        fingerprint and the row index). An updater calls it at the start of every update."""
        ...

    def chunk_identity(self, rows: Tensor) -> dict[str, Tensor]:
        """The identity keys (``sample_ids``, ``sample_sources``, ``sample_rows``) of rows
        ``rows`` of the current chunk, for a rewrite (:meth:`replace`) that keeps chunk samples."""
        ...

    def sample_ids(self) -> Tensor:
        """The stable id of the sample in each filled slot (int64, slot order; empty for a memory
        that stores no samples)."""
        ...

    def source_entries(self) -> list[dict[str, Any]]:
        """The chunks rows came from, ``{"fingerprint", "update", "provided_ids"}`` each; a row's
        ``sample_sources`` value indexes this list."""
        ...

    def delete(self, ids: Tensor | Sequence[int]) -> int:
        """Remove every row holding one of ``ids`` and compact the storage; return the rows removed.
        An id not held raises :class:`~retentive.errors.SampleNotFoundError` naming it, nothing removed."""
        ...

    def state_dict(self) -> dict[str, object]: ...

    def load_state_dict(self, state: dict[str, object]) -> None: ...
