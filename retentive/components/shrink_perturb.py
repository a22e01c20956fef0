"""Shrink-and-perturb (Ash & Adams, NeurIPS 2020), as Renate's Super-ER uses it.

At the start of each update every trainable parameter becomes ``shrink_factor * p + sigma * n``
with ``n ~ N(0, 1)``: warm-starting from shrunk, slightly noisy weights keeps a network able to
learn the new chunk. It has no loss term (weight 0), so it leaves the loss normalisation alone.

Deviation from Renate: frozen parameters (``requires_grad=False``) are left as they are, since
freezing them says they must not change; Renate perturbed every parameter.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from retentive.components.base import Component, UpdateContext, positive


@torch.no_grad()
def shrink_perturb_(
    parameters: Iterable[nn.Parameter], shrink_factor: float, sigma: float, generator: torch.Generator | None = None
) -> None:
    """In place: ``p <- shrink_factor * p + sigma * N(0, 1)`` (noise drawn on the CPU, in order)."""
    for p in parameters:
        if shrink_factor != 1.0:
            p.mul_(shrink_factor)
        if sigma != 0.0:
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
            p.add_(noise.to(device=p.device, dtype=p.dtype), alpha=sigma)


class ShrinkAndPerturb(Component):
    """Shrink and perturb the model's trainable weights when an update starts.

    Args:
        shrink_factor: the factor the weights are multiplied by, > 0 [0.95].
        sigma: the standard deviation of the added Gaussian noise, >= 0 [0.001].
    """

    def __init__(self, shrink_factor: float = 0.95, sigma: float = 0.001) -> None:
        super().__init__(weight=0.0)
        positive("shrink_factor", shrink_factor)
        if not float(sigma) >= 0.0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.shrink_factor = float(shrink_factor)
        self.sigma = float(sigma)

    def on_update_start(self, ctx: UpdateContext) -> None:
        trainable = (p for p in ctx.model.parameters() if p.requires_grad)
        shrink_perturb_(trainable, self.shrink_factor, self.sigma, ctx.generator)

    def extra_repr(self) -> str:
        return f"shrink_factor={self.shrink_factor}, sigma={self.sigma}"
