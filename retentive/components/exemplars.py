"""Exemplar memories chosen at the end of an update: herding (iCaRL) and per-task quotas (GEM,
A-GEM, Avalanche's experience-balanced replay).

Both rewrite the whole memory once per update. The rows are laid out group by group (a class or a
task), each group in its selection order, so that shrinking a group to a smaller quota keeps its
first rows — iCaRL's "reduce the exemplar set" step, and a random subset for a randomly ordered
group.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retentive.memory.buffer import CORE_KEYS, ReplayBuffer


def balanced_quotas(capacity: int, groups: int, what: str = "groups") -> list[int]:
    """Split ``capacity`` slots between ``groups`` as evenly as possible (the first get the rest).

    Raises ``ValueError`` when a group would get no slot at all.
    """
    if groups < 1:
        return []
    if capacity < groups:
        raise ValueError(
            f"a memory of {capacity} samples cannot keep one sample for each of the {groups} {what} seen; "
            f"use memory_size >= {groups}"
        )
    base, rest = divmod(capacity, groups)
    return [base + (1 if i < rest else 0) for i in range(groups)]


def herding_selection(features: Tensor, counts: Tensor, m: int) -> Tensor:
    """iCaRL's herding, for several classes at once.

    ``features`` is ``(K, N, D)``: K classes padded to N candidates each (``counts[k]`` real ones
    first). Step ``j`` picks, for every class, the candidate that brings the mean of the chosen
    ``j + 1`` closest to the class mean ``μ_k``: ``argmin_i ||μ_k - (S_k + f_i) / (j + 1)||``, never
    picking a candidate twice. Returns ``(K, min(m, N))`` candidate indices in selection order
    (``-1`` where a class ran out of candidates).
    """
    k, n, _ = features.shape
    steps = min(m, n)
    valid = torch.arange(n, device=features.device).unsqueeze(0) < counts.to(features.device).unsqueeze(1)
    weights = valid.to(features.dtype)
    mean = (features * weights.unsqueeze(-1)).sum(1) / counts.clamp(min=1).to(features.dtype).unsqueeze(-1)
    running = torch.zeros_like(mean)
    available = valid.clone()
    chosen = torch.full((k, steps), -1, dtype=torch.long, device=features.device)
    for j in range(steps):
        candidate = (running.unsqueeze(1) + features) / (j + 1)
        distance = (mean.unsqueeze(1) - candidate).norm(dim=-1).masked_fill(~available, float("inf"))
        pick = distance.argmin(dim=1)
        has = available.any(dim=1)
        chosen[:, j] = torch.where(has, pick, torch.full_like(pick, -1))
        running = running + torch.where(has.unsqueeze(-1), features[torch.arange(k), pick], torch.zeros_like(running))
        available[torch.arange(k), pick] = False
    return chosen


def replace_memory(memory: ReplayBuffer, rows: dict[str, Tensor], offered: int) -> None:
    """Make ``rows`` the memory's whole content (slots ``0..n-1``); count ``offered`` new samples seen.

    Only the core keys can be rebuilt from data; a memory holding component metadata (DER's
    logits, POD's features) is refused, since those rows would have none.
    """
    extra = set(memory.keys) - set(CORE_KEYS)
    if extra:
        raise ValueError(
            f"this memory is rebuilt from samples at the end of each update, but it also stores {sorted(extra)} "
            "for other components; combine exemplar-selecting methods only with components without memory metadata"
        )
    n = int(rows["targets"].shape[0])
    if n > memory.capacity:
        raise ValueError(f"{n} exemplars do not fit a memory of {memory.capacity}")
    memory.seen += int(offered)
    if n == 0:
        return
    if not memory.storage:
        memory.allocate(rows)
    memory.write(memory.encode(rows), torch.arange(n), size=n)  # the storage grows to n rows if needed
