"""Renate's loss arithmetic: the class mask and the normalised total of the weighted terms."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


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
