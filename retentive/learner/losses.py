"""Renate's loss arithmetic: the class mask, the components' weighted terms and their normalised total."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from retentive.components.base import Component, StepContext


def mask_logits(logits: Tensor, keep_classes: Tensor) -> Tensor:
    """``logits`` with every class not in ``keep_classes`` set to the dtype's lowest value.

    Renate fills ``-inf``; the lowest finite value gives the same softmax and cross-entropy without
    turning an MSE on the logits (DER) into ``inf``.
    """
    keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    keep[keep_classes.to(logits.device)] = True
    return logits.masked_fill(~keep, torch.finfo(logits.dtype).min)


def normalized_total(
    loss_weight: float, new_loss: Tensor, terms: Sequence[tuple[float, Tensor]], normalize: bool
) -> Tensor:
    """Renate's total: ``(w*L_new + sum c_i) / (w + sum weight_i)`` over the terms present.

    Each ``c_i`` already carries its weight; terms absent this step (``None``) are not passed, so
    the first chunk, with an empty memory, trains on exactly ``L_new``.
    """
    total = loss_weight * new_loss
    for _, term in terms:
        total = total + term
    if not normalize:
        return total
    denominator = loss_weight + sum(weight for weight, _ in terms)
    return total / denominator if denominator > 0 else total


def weighted_terms(
    components: Iterable[Component], ctx: StepContext
) -> tuple[list[tuple[float, Tensor]], list[Tensor]]:
    """Each component's term times its weight, named in ``ctx.losses`` (``loss/<i>_<Class>``).

    Returns the normalised terms with their weights, and the penalties (``normalized = False``)
    that are added after the normalisation; a component whose ``loss`` returns ``None`` is absent.
    """
    normalized: list[tuple[float, Tensor]] = []
    penalties: list[Tensor] = []
    for i, component in enumerate(components):
        term = component.loss(ctx)
        if term is None:
            continue
        if not torch.is_tensor(term) or term.dim() != 0:
            shape = tuple(term.shape) if torch.is_tensor(term) else type(term).__name__
            raise ValueError(f"{type(component).__name__}.loss must return a scalar tensor or None, got {shape}")
        weighted = component.weight * term
        if component.normalized:
            normalized.append((component.weight, weighted))
        else:
            penalties.append(weighted)
        ctx.losses[f"loss/{i}_{type(component).__name__}"] = weighted
    return normalized, penalties
