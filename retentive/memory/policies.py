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


def _keep_last_per_slot(source: Tensor, slots: Tensor, n: int | None = None) -> tuple[Tensor, Tensor]:
    """Resolve two incoming samples aimed at one slot as sequential insertion would: the later wins.

    ``n`` bounds the source indices (the batch size); given, nothing is read back from a tensor.
    """
    if slots.numel() < 2:
        return source, slots
    bound = n if n is not None else int(source.max()) + 1
    order = torch.argsort(slots * bound + source)  # by slot, then by arrival
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
    #: slots ``size..capacity-1`` are filled before any is replaced
    fills_free_slots_first = True

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
        return _keep_last_per_slot(source, slots[accepted], n)


class GreedyClassBalancedPolicy:
    """GDumb's greedy class-balancing sampler (Prabhu et al., ECCV 2020).

    While the memory has free slots every sample is kept. Once it is full, a sample of class ``y``
    is kept only if ``y`` holds fewer than ``capacity // |Y|`` slots, ``|Y|`` being the number of
    classes known so far (those in memory plus those arrived in this batch); it then replaces a
    uniformly drawn sample of a largest class (ties between largest classes drawn uniformly).

    Each decision depends on the counts the previous one left, so the decisions are taken in
    arrival order on Python integers (microseconds per sample, and GDumb offers each chunk once
    per update); the data itself is written afterwards in one vectorised scatter like any policy.
    A class that reached its quota is never the one evicted, so the memory converges to equal
    class counts (within one) as soon as every class has offered enough samples.
    """

    name = "greedy_class_balanced"
    fills_free_slots_first = True

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
        if targets is None:
            raise ValueError("the greedy class-balanced policy needs the targets of the incoming samples")
        fill = max(0, min(capacity - size, n))
        source = list(range(fill))
        slots = list(range(size, size + fill))
        if fill < n:
            stored = [] if stored_targets is None else stored_targets[:size].tolist()
            by_class: dict[int, list[int]] = {}
            for slot, label in enumerate(stored + targets[:fill].tolist()):
                by_class.setdefault(int(label), []).append(slot)
            rest = targets[fill:].tolist()
            draws = torch.rand(2 * len(rest), generator=generator, dtype=torch.float64).tolist()
            for k, label in enumerate(rest):
                members = by_class.setdefault(int(label), [])
                if len(members) >= capacity // len(by_class):
                    continue
                largest = max(len(v) for v in by_class.values())
                candidates = [c for c, v in by_class.items() if len(v) == largest]
                victims = by_class[candidates[int(draws[2 * k] * len(candidates))]]
                j = int(draws[2 * k + 1] * len(victims))
                victims[j], victims[-1] = victims[-1], victims[j]
                slot = victims.pop()
                members.append(slot)
                source.append(fill + k)
                slots.append(slot)
        return _keep_last_per_slot(torch.tensor(source, dtype=torch.int64), torch.tensor(slots, dtype=torch.int64))


def policy_from_name(name: str) -> InsertionPolicy:
    """Look up a policy by its config name."""
    policies: dict[str, type] = {"reservoir": ReservoirPolicy, "greedy_class_balanced": GreedyClassBalancedPolicy}
    if name not in policies:
        raise ValueError(f"unknown memory policy {name!r}; expected one of {sorted(policies)}")
    return policies[name]()
