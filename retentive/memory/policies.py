"""Insertion policies: which incoming samples go to which memory slots.

A policy is a pure function of counts and random numbers, vectorised over the incoming batch, so
that inserting never loops over samples in Python. It returns ``(source, slots)``: row ``source[i]``
of the incoming batch is written to memory slot ``slots[i]``. Slots are unique, so the scatter that
follows is well defined.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sized

import torch
from torch import Tensor

from retentive.memory.protocol import InsertionPolicy, Offer, PolicyDefaults, SlotPolicy

__all__ = [
    "ClassBalancedReservoirPolicy",
    "GreedyClassBalancedPolicy",
    "InsertionPolicy",
    "PolicyDefaults",
    "ReservoirPolicy",
    "RingBufferPolicy",
    "policy_from_name",
]


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


class ReservoirPolicy(SlotPolicy):
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

    def place(self, offer: Offer) -> tuple[Tensor, Tensor]:
        n, seen, capacity, generator = offer.n, offer.seen, offer.capacity, offer.generator
        position = torch.arange(seen, seen + n, dtype=torch.int64)
        filling = position < capacity
        draws = (torch.rand(n, generator=generator, dtype=torch.float64) * (position + 1)).long()
        slots = torch.where(filling, position, draws)
        accepted = slots < capacity
        source = torch.arange(n, dtype=torch.int64)[accepted]
        return _keep_last_per_slot(source, slots[accepted], n)


class GreedyClassBalancedPolicy(SlotPolicy):
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

    def place(self, offer: Offer) -> tuple[Tensor, Tensor]:
        n, size, capacity, generator = offer.n, offer.size, offer.capacity, offer.generator
        targets, stored_targets = offer.targets, offer.stored_targets
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


def _check_labels(targets: Tensor | None, policy: str) -> list[int]:
    if targets is None:
        raise ValueError(f"the {policy} policy needs the targets of the incoming samples")
    labels = targets.detach().to("cpu", torch.int64)
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"the {policy} policy needs class targets >= 0, got {int(labels.min())}")
    return labels.tolist()


def _check_room(capacity: int, num_classes: int, policy: str) -> None:
    if 0 < capacity < num_classes:
        raise ValueError(
            f"a {policy} memory needs at least one slot per class: memory_size={capacity} is smaller "
            f"than the {num_classes} classes"
        )


class _ClassSharePolicy(SlotPolicy):
    """An online policy that shares the memory between classes: it may be told the number of
    classes, and then refuses a memory with fewer slots up front."""

    #: the policy's name in messages
    label = "class-share"
    #: it fills free slots first, so the buffer knows its size without reading the slots
    fills_free_slots_first = True

    def __init__(self, num_classes: int | None = None) -> None:
        if num_classes is not None and (
            not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1
        ):
            raise ValueError(f"num_classes must be an int >= 1 or None, got {num_classes!r}")
        self.num_classes = num_classes

    def check(self, capacity: int, model: object = None) -> None:
        """Refuse a memory smaller than the number of classes (before anything is trained)."""
        if self.num_classes is not None:
            _check_room(capacity, self.num_classes, self.label)

    def offered_classes(self, offer: Offer) -> tuple[list[int], list[int]]:
        """The offered samples' classes and the stored ones (slot order), as Python ints."""
        labels = _check_labels(offer.targets, self.label)
        stored = offer.stored_targets
        return labels, [] if stored is None or offer.size == 0 else stored[: offer.size].detach().cpu().tolist()

    def largest_count(self, capacity: int, classes: Mapping[int, Sized]) -> int:
        """Once the memory is full: the largest class's count, which gives up a slot; a memory with
        fewer slots than classes is refused."""
        _check_room(capacity, len(classes), self.label)
        return max(len(members) for members in classes.values())


class ClassBalancedReservoirPolicy(_ClassSharePolicy):
    """Class-balancing reservoir sampling (CBRS; Chrysakis & Moens, ICML 2020, Algorithm 1).

    Every class gets an equal share of the memory, rebalanced as classes appear, and within its
    share each class is a reservoir sample of its own stream. While the memory has free slots
    every sample is kept. Once it is full, a class is *full* if it is, or has been since the
    memory filled, a largest class in memory. A sample of a class that is not full replaces a
    uniformly drawn sample of a uniformly drawn largest class; a sample of a full class ``c``
    replaces a uniformly drawn sample of ``c`` with probability ``m_c / n_c`` (``m_c`` samples of
    ``c`` stored, ``n_c`` seen), which is reservoir sampling within the class.

    Consequence (tested): a class that is not full keeps every sample it offered, and full
    classes hold the largest count ``M`` or ``M - 1``, so the memory is as balanced as the stream
    allows. The state beyond the stored targets, saved with the memory under ``policy_state``,
    is the per-class seen counts ``n_c`` and full flags.

    Each decision depends on the counts the previous left, so decisions run in arrival order on
    Python integers (microseconds per sample); the random numbers are drawn in one call and the
    data are written in one vectorised scatter. Reading the targets costs one host transfer per
    step, as for any class-aware online policy.

    Args:
        num_classes: the number of classes, if known; then a memory with fewer slots is refused
            when the updater is built (:meth:`check`). Otherwise it is refused at the insert that
            brings more classes than slots.
    """

    name = "class_balanced_reservoir"
    label = "class-balanced reservoir"

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__(num_classes)
        self.seen_per_class = torch.zeros(0, dtype=torch.int64)
        self.full = torch.zeros(0, dtype=torch.bool)

    def state_dict(self) -> dict[str, Tensor]:
        return {"seen_per_class": self.seen_per_class.clone(), "full": self.full.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.seen_per_class = (
            state.get("seen_per_class", torch.zeros(0, dtype=torch.int64)).to("cpu", torch.int64).clone()
        )
        self.full = state.get("full", torch.zeros(0, dtype=torch.bool)).to("cpu", torch.bool).clone()

    def place(self, offer: Offer) -> tuple[Tensor, Tensor]:
        n, size, capacity, generator = offer.n, offer.size, offer.capacity, offer.generator
        labels, stored = self.offered_classes(offer)
        classes = max([len(self.seen_per_class) - 1, *labels, *stored]) + 1 if (labels or stored) else 0
        seen_c = self.seen_per_class.tolist() + [0] * (classes - len(self.seen_per_class))
        full = self.full.tolist() + [False] * (classes - len(self.full))
        by_class: dict[int, list[int]] = {}
        for slot, label in enumerate(stored):
            by_class.setdefault(int(label), []).append(slot)
        for c, members in by_class.items():  # a state saved by another policy: at least what is stored
            seen_c[c] = max(seen_c[c], len(members))
        draws = torch.rand(3 * n, generator=generator, dtype=torch.float64).tolist()
        source: list[int] = []
        slots: list[int] = []
        for k, label in enumerate(labels):
            seen_c[label] += 1
            members = by_class.setdefault(label, [])
            if size < capacity:
                slot = size
                size += 1
            else:
                largest = self.largest_count(capacity, by_class)
                candidates = [c for c, v in by_class.items() if len(v) == largest]
                for c in candidates:
                    full[c] = True
                if not full[label]:
                    victims = by_class[candidates[int(draws[3 * k] * len(candidates))]]
                elif draws[3 * k] * seen_c[label] < len(members):  # u < m_c / n_c
                    victims = members
                else:
                    continue
                j = int(draws[3 * k + 1] * len(victims))
                victims[j], victims[-1] = victims[-1], victims[j]
                slot = victims.pop()
            members.append(slot)
            source.append(k)
            slots.append(slot)
        self.seen_per_class = torch.tensor(seen_c, dtype=torch.int64)
        self.full = torch.tensor(full, dtype=torch.bool)
        return _keep_last_per_slot(torch.tensor(source, dtype=torch.int64), torch.tensor(slots, dtype=torch.int64))


class RingBufferPolicy(_ClassSharePolicy):
    """A FIFO per class (the ring buffer of Chaudhry et al., "On Tiny Episodic Memories in
    Continual Learning", 2019), with the per-class share rebalanced as classes appear.

    While the memory has free slots every sample is kept. Once it is full, a sample of class
    ``c`` replaces the oldest sample of the largest class (ties: the class whose oldest sample
    is oldest) if ``c`` holds at least two fewer than it, and the oldest sample of ``c``
    otherwise. So each class keeps its most recent samples (evictions always take a class's
    oldest), the largest count never grows, and every class either keeps all it offered or holds
    the largest count or one less: with a fixed set of classes this is Chaudhry et al.'s equal
    split. Fully deterministic: it draws no random numbers.

    The state beyond the stored targets, saved with the memory under ``policy_state``, is the
    arrival position of the sample in each slot (the FIFO order). Decisions run in arrival order
    on Python integers, as they depend on one another; the data are written in one scatter.

    Args:
        num_classes: the number of classes, if known: a smaller memory is refused up front.
    """

    name = "ring_buffer"
    label = "ring-buffer"

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__(num_classes)
        #: arrival position (stream index) of the sample in each slot; -1 where empty
        self.arrival = torch.zeros(0, dtype=torch.int64)

    def state_dict(self) -> dict[str, Tensor]:
        return {"arrival": self.arrival.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.arrival = state.get("arrival", torch.zeros(0, dtype=torch.int64)).to("cpu", torch.int64).clone()

    def rows_removed(self, keep: Tensor, capacity: int) -> None:
        """The memory deleted the filled rows not in ``keep`` and moved the rest up: so do the arrivals."""
        if self.arrival.numel():
            kept = self.arrival[: keep.numel()][keep.cpu()]
            self.arrival = torch.cat([kept, torch.full((capacity - kept.numel(),), -1, dtype=torch.int64)])

    def place(self, offer: Offer) -> tuple[Tensor, Tensor]:
        seen, size, capacity = offer.seen, offer.size, offer.capacity
        labels, stored = self.offered_classes(offer)
        arrival = self.arrival
        if arrival.numel() != capacity:  # first use, or a memory filled by another policy: slot order
            arrival = torch.cat([arrival, torch.full((max(0, capacity - arrival.numel()),), -1, dtype=torch.int64)])[
                :capacity
            ]
            unknown = (arrival[:size] < 0).nonzero().squeeze(1)
            arrival[unknown] = unknown - size - (1 << 40)  # older than anything seen
        times = arrival.tolist()
        queues: dict[int, deque[int]] = {}
        for slot in sorted(range(size), key=times.__getitem__):
            queues.setdefault(int(stored[slot]), deque()).append(slot)
        source: list[int] = []
        slots: list[int] = []
        for k, label in enumerate(labels):
            own = queues.setdefault(label, deque())
            if size < capacity:
                slot = size
                size += 1
            else:
                largest = self.largest_count(capacity, queues)
                if len(own) >= largest - 1:  # moving a slot over would not balance anything
                    slot = own.popleft()
                else:
                    victim = min((q for q in queues.values() if len(q) == largest), key=lambda q: times[q[0]])
                    slot = victim.popleft()
            own.append(slot)
            times[slot] = seen + k
            source.append(k)
            slots.append(slot)
        self.arrival = torch.tensor(times, dtype=torch.int64)
        return _keep_last_per_slot(torch.tensor(source, dtype=torch.int64), torch.tensor(slots, dtype=torch.int64))


def policy_from_name(name: str) -> InsertionPolicy:
    """Look up a policy by its config name (built with its default arguments)."""
    from retentive.memory import selection_policies as chosen_at_end  # imported on demand (no cycle)

    policies: dict[str, type] = {
        "reservoir": ReservoirPolicy,
        "greedy_class_balanced": GreedyClassBalancedPolicy,
        "class_balanced_reservoir": ClassBalancedReservoirPolicy,
        "ring_buffer": RingBufferPolicy,
        "herding": chosen_at_end.HerdingPolicy,
        "k_center": chosen_at_end.KCenterPolicy,
        "gradient_diversity": chosen_at_end.GradientDiversityPolicy,
        "forgetting": chosen_at_end.ForgettingPolicy,
    }
    if name not in policies:
        raise ValueError(f"unknown memory policy {name!r}; expected one of {sorted(policies)}")
    return policies[name]()
