"""Pooled Output Distillation (PODNet; Douillard et al., ECCV 2020), as Renate's POD-ER uses it.

For each distilled layer with features ``a`` of shape (B, C, H, W), square them and pool:

    spatial   concat(sum over W -> (C, H), sum over H -> (C, W))   [default]
    channel   sum over C -> (H, W)
    width     sum over H -> (C, W)    per-column statistics (PODNet's and Renate's naming)
    height    sum over W -> (C, H)    per-row statistics
    gap       mean over H and W -> (C,)
    pixel     no pooling -> (C, H, W)

each flattened per sample and, with ``normalize``, scaled to unit L2 norm. The distance is the
L2 (Frobenius) norm of current minus stored, per sample, averaged over the batch; the term is
``alpha`` times the mean over layers.

Flat features (B, D), as an MLP's, are read as (B, D, 1, 1), and the types degenerate there:
width, height and gap pool over axes of size 1, so they equal pixel; spatial concatenates pixel
with itself (the same distance with ``normalize``, sqrt(2) times it without); channel keeps one
number per sample, the squared norm of the features, which ``normalize`` maps to 1 for every
sample, so that the term is then identically 0 and trains nothing. Use a convolutional model
(e.g. :class:`retentive.models.SmallCNN`) for the pooling to matter.

Deviations from Renate 0.5.2, each a defect there: its ``channel`` type tested for the string
"channels" and so never pooled, and its ``pixel`` type did not flatten 4-d features, giving a
non-scalar loss that cannot be back-propagated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from retentive.components.base import Component, StepContext

DISTILLATION_TYPES = ("spatial", "channel", "width", "height", "gap", "pixel")


def _normalized(pooled: Tensor) -> Tensor:
    # F.normalize's x / max(|x|, eps).
    return pooled / torch.linalg.vector_norm(pooled, ord=2, dim=1, keepdim=True).clamp_min(1e-12)


def pod_pool(features: Tensor, distillation_type: str = "spatial", normalize: bool = True) -> Tensor:
    """Square, pool and flatten ``features`` per sample: a (B, D) tensor (see the module docstring)."""
    if distillation_type not in DISTILLATION_TYPES:
        raise ValueError(f"unknown distillation_type {distillation_type!r}; expected one of {list(DISTILLATION_TYPES)}")
    if features.dim() not in (2, 4):
        raise ValueError(f"POD distils features of shape (B, C, H, W) or (B, D), got shape {tuple(features.shape)}")
    a = features.pow(2)
    b = a.shape[0]
    if a.dim() == 2:  # (B, D) read as (B, D, 1, 1): pooling over the unit axes is the identity
        if distillation_type == "channel":
            pooled = a.sum(dim=1, keepdim=True)
        elif distillation_type == "spatial":
            pooled = torch.cat([a, a], dim=1)
        else:
            pooled = a
    elif distillation_type == "spatial":
        pooled = torch.cat([a.sum(dim=3).reshape(b, -1), a.sum(dim=2).reshape(b, -1)], dim=1)
    elif distillation_type == "channel":
        pooled = a.sum(dim=1).reshape(b, -1)
    elif distillation_type == "width":
        pooled = a.sum(dim=2).reshape(b, -1)
    elif distillation_type == "height":
        pooled = a.sum(dim=3).reshape(b, -1)
    elif distillation_type == "gap":
        pooled = a.mean(dim=(2, 3))
    else:
        pooled = a.reshape(b, -1)
    return _normalized(pooled) if normalize else pooled


def pod_distance(current: Tensor, stored: Tensor, distillation_type: str = "spatial", normalize: bool = True) -> Tensor:
    """Mean over the batch of the per-sample L2 distance between the pooled features; ``stored``
    is a constant (no gradient flows to it)."""
    if current.shape != stored.shape:
        raise ValueError(
            f"current features have shape {tuple(current.shape)} but the stored ones {tuple(stored.shape)}"
        )
    scale = 1.0
    if current.dim() == 2 and distillation_type == "spatial":
        # Flat spatial pooling is the pixel vector twice over: the same distance once normalised,
        # sqrt(2) times it otherwise. Skipping the concatenation saves ops at every step.
        distillation_type, scale = "pixel", (1.0 if normalize else math.sqrt(2.0))
    target = pod_pool(stored.detach().to(current.dtype), distillation_type, normalize)
    distance = torch.linalg.vector_norm(pod_pool(current, distillation_type, normalize) - target, ord=2, dim=1).mean()
    return distance if scale == 1.0 else scale * distance


class PooledOutputDistillation(Component):
    """POD on replayed samples: keep the pooled features of ``layers`` close to those stored.

    Args:
        weight: ``alpha``, the weight of the term.
        layers: names of the submodules whose outputs are distilled (as in ``named_modules()``);
            their outputs are stored with each memory sample as ``features.<layer>``.
        distillation_type: one of ``spatial`` (default), ``channel``, ``width``, ``height``,
            ``gap``, ``pixel``.
        normalize: L2-normalise each sample's pooled vector before the distance (default on).
    """

    def __init__(
        self,
        weight: float = 1.0,
        layers: Sequence[str] = (),
        distillation_type: str = "spatial",
        normalize: bool = True,
    ) -> None:
        super().__init__(weight)
        if isinstance(layers, str) or not layers:
            raise ValueError(f"POD needs a non-empty list of layer names to distil, got {layers!r}")
        if distillation_type not in DISTILLATION_TYPES:
            raise ValueError(
                f"unknown distillation_type {distillation_type!r}; expected one of {list(DISTILLATION_TYPES)}"
            )
        self.layers = tuple(dict.fromkeys(str(layer) for layer in layers))
        self.distillation_type = distillation_type
        self.normalize = bool(normalize)
        self.memory_keys = tuple(f"features.{layer}" for layer in self.layers)

    def loss(self, ctx: StepContext) -> Tensor | None:
        if ctx.memory is None:
            return None
        distances = [
            pod_distance(
                ctx.memory_features[layer],
                ctx.memory.data[key],
                self.distillation_type,
                self.normalize,
            )
            for layer, key in zip(self.layers, self.memory_keys)
        ]
        return torch.stack(distances).mean()

    def extra_repr(self) -> str:
        return (
            f"weight={self.weight}, layers={list(self.layers)}, type={self.distillation_type}, "
            f"normalize={self.normalize}"
        )
