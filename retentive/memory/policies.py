"""Insertion policies: which incoming samples go to which memory slots.

A policy is a pure function of counts and random numbers, vectorised over the incoming batch, so
that inserting never loops over samples in Python. It returns ``(source, slots)``: row ``source[i]``
of the incoming batch is written to memory slot ``slots[i]``. Slots are unique, so the scatter that
follows is well defined.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class InsertionPolicy(Protocol):
    """Chooses memory slots for a batch of ``n`` incoming samples.

    A policy that never reads ``targets`` may say so with a class attribute
    ``uses_targets = False``, which spares a distributed insert one all-gather per step.
    """

    name: str

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
        """Return ``(source, slots)`` as int64 tensors on the CPU."""
        ...


def _keep_last_per_slot(source: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
    """Resolve two incoming samples aimed at one slot as sequential insertion would: the later wins."""
    if slots.numel() < 2:
        return source, slots
    order = torch.argsort(slots * (int(source.max()) + 1) + source)  # by slot, then by arrival
    slots, source = slots[order], source[order]
    last = torch.ones_like(slots, dtype=torch.bool)
    last[:-1] = slots[1:] != slots[:-1]
    return source[last], slots[last]


class ReservoirPolicy:
    """Reservoir sampling (Vitter's algorithm R): every sample seen is kept with equal probability.

    Sample number ``t`` (0-based, counted over everything ever offered) fills slot ``t`` while the
    memory is not full; afterwards it draws ``r ~ U{0..t}`` and replaces slot ``r`` if
    ``r < capacity``. Drawing all ``r`` of a batch at once is exactly equivalent to the sequential
    algorithm provided collisions keep the later sample, which :func:`_keep_last_per_slot` does.
    """

    name = "reservoir"
    #: it never reads the targets, so a distributed insert need not gather them
    uses_targets = False

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
        position = torch.arange(seen, seen + n, dtype=torch.int64)
        filling = position < capacity
        draws = (torch.rand(n, generator=generator, dtype=torch.float64) * (position + 1)).long()
        slots = torch.where(filling, position, draws)
        accepted = slots < capacity
        source = torch.arange(n, dtype=torch.int64)[accepted]
        return _keep_last_per_slot(source, slots[accepted])


def policy_from_name(name: str) -> InsertionPolicy:
    """Look up a policy by its config name."""
    policies: dict[str, type] = {"reservoir": ReservoirPolicy}
    if name not in policies:
        raise ValueError(f"unknown memory policy {name!r}; expected one of {sorted(policies)}")
    return policies[name]()
