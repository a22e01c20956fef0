"""k-means (Lloyd's algorithm with k-means++ seeding), for S-Prompts' task prototypes.

Small and deterministic given a generator, so that every data-parallel replica and every rerun
finds the same centers; it runs once per update on one chunk's features.
"""

from __future__ import annotations

import torch
from torch import Tensor


def kmeans_plus_plus(points: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): each next center drawn with probability
    proportional to the squared distance to the nearest center chosen so far."""
    n = points.shape[0]
    first = torch.randint(n, (1,), generator=generator)
    centers = [points[int(first.item())]]
    d2 = (points - centers[0]).pow(2).sum(dim=1)
    for _ in range(1, k):
        weights = d2.clamp_min(0).cpu().double()
        if weights.sum() > 0:
            pick = torch.multinomial(weights, 1, generator=generator)
        else:  # every point is a center already: any will do
            pick = torch.randint(n, (1,), generator=generator)
        centers.append(points[int(pick.item())])
        d2 = torch.minimum(d2, (points - centers[-1]).pow(2).sum(dim=1))
    return torch.stack(centers)


def kmeans(points: Tensor, k: int, generator: torch.Generator | None = None, max_iterations: int = 100) -> Tensor:
    """The ``(k, D)`` centers of ``(N, D)`` ``points`` (``N >= k``), iterated until no point
    changes cluster; an emptied cluster keeps its previous center."""
    if points.dim() != 2:
        raise ValueError(f"k-means takes (N, D) points, got shape {tuple(points.shape)}")
    if not isinstance(k, int) or k < 1 or points.shape[0] < k:
        raise ValueError(f"k-means needs 1 <= k <= N points, got k={k!r} for {points.shape[0]} points")
    points = points.float()
    centers = kmeans_plus_plus(points, k, generator)
    assignment = torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
    for _ in range(max_iterations):
        new = torch.cdist(points, centers).argmin(dim=1)
        if torch.equal(new, assignment):
            break
        assignment = new
        counts = torch.bincount(assignment, minlength=k).to(points.dtype)
        sums = torch.zeros_like(centers).index_add_(0, assignment, points)
        centers = torch.where(counts.unsqueeze(1) > 0, sums / counts.clamp_min(1).unsqueeze(1), centers)
    return centers
