"""Exemplar memories chosen at the end of an update: herding (iCaRL) and per-task quotas (GEM,
A-GEM, Avalanche's experience-balanced replay).

Both rewrite the whole memory once per update. The rows are laid out group by group (a class or a
task), each group in its selection order, so that shrinking a group to a smaller quota keeps its
first rows — iCaRL's "reduce the exemplar set" step, and a random subset for a randomly ordered
group.

The math is the memory's: :func:`retentive.memory.selection.class_quotas` splits the budget,
:func:`retentive.memory.selection.herding` herds, and the memory's ``replace`` rewrites it; the
functions here adapt them to the shapes these methods hold their data in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from retentive.memory.buffer import CORE_KEYS
from retentive.memory.identity import IDENTITY_KEYS
from retentive.memory.layout import is_input_key
from retentive.memory.protocol import ReplayMemory
from retentive.memory.selection import class_quotas, herding


def balanced_quotas(capacity: int, groups: int, what: str = "groups") -> list[int]:
    """Split ``capacity`` slots between ``groups`` as evenly as possible (the first get the rest).

    :func:`~retentive.memory.selection.class_quotas` with every group holding enough samples.
    Raises ``ValueError`` when a group would get no slot at all.
    """
    if groups < 1:
        return []
    if capacity < groups:
        raise ValueError(
            f"a memory of {capacity} samples cannot keep one sample for each of the {groups} {what} seen; "
            f"use memory_size >= {groups}"
        )
    return class_quotas(torch.full((groups,), capacity, dtype=torch.int64), capacity).tolist()


def herding_selection(features: Tensor, counts: Tensor, m: int) -> Tensor:
    """iCaRL's herding (:func:`~retentive.memory.selection.herding`, features as given) for
    classes held padded.

    ``features`` is ``(K, N, D)``: K classes padded to N candidates each (``counts[k]`` real ones
    first). Returns ``(K, min(m, N))`` candidate indices in selection order (``-1`` where a class
    ran out of candidates).
    """
    k, n, _ = features.shape
    counts = counts.to(torch.int64).cpu()
    valid = torch.arange(n).unsqueeze(0) < counts.unsqueeze(1)  # (K, N)
    labels = torch.arange(k).unsqueeze(1).expand(k, n)[valid]
    quotas = counts.clamp(max=min(m, n))
    picked = herding(features[valid.to(features.device)], labels.to(features.device), quotas, normalize=False).cpu()
    start = torch.cumsum(counts, 0) - counts
    chosen = torch.full((k, min(m, n)), -1, dtype=torch.long)
    rank = torch.arange(picked.numel()) - (torch.cumsum(quotas, 0) - quotas)[labels[picked]]
    chosen[labels[picked], rank] = picked - start[labels[picked]]
    return chosen.to(features.device)


def replace_memory(memory: ReplayMemory, rows: Mapping[str, Any], offered: int) -> None:
    """Make ``rows`` the memory's whole content (slots ``0..n-1``); count ``offered`` new samples seen.

    Only the core keys can be rebuilt from data; a memory holding component metadata (DER's
    logits, POD's features) is refused, since those rows would have none.
    """
    extra = {key for key in memory.keys if not is_input_key(key)} - {*CORE_KEYS, *IDENTITY_KEYS}
    if extra:
        raise ValueError(
            f"this memory is rebuilt from samples at the end of each update, but it also stores {sorted(extra)} "
            "for other components; combine exemplar-selecting methods only with components without memory metadata"
        )
    n = int(rows["targets"].shape[0])
    if n > memory.capacity:
        raise ValueError(f"{n} exemplars do not fit a memory of {memory.capacity}")
    memory.replace(rows, offered)
