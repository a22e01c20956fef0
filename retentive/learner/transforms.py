"""Transforms with Renate's names, applied on the fly to each batch.

A transform that takes a whole batch (it has a true ``takes_batch`` attribute, as the transforms
in :mod:`retentive.data.transforms` do) is called once per batch; any other transform (a
torchvision transform written for one sample) is applied sample by sample and the results are
stacked. The memory always stores the samples as the chunk gave them; ``buffer_transform`` is
applied to replayed samples when they are drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from retentive.errors import DataError

Transform = Callable[[Any], Any]


def apply_transform(transform: Transform | None, batch: Any, name: str) -> Any:
    """``transform`` applied to ``batch`` (batched or per sample); ``batch`` itself when ``None``."""
    if transform is None:
        return batch
    if getattr(transform, "takes_batch", False):
        out = transform(batch)
    else:
        if not torch.is_tensor(batch):
            return transform(batch)  # nested inputs: the transform handles the structure itself
        out = torch.stack([torch.as_tensor(transform(sample)) for sample in batch])
    if torch.is_tensor(batch) and torch.is_tensor(out) and out.shape[:1] != batch.shape[:1]:
        raise DataError(f"{name} changed the batch size from {batch.shape[0]} to {out.shape[0]}")
    return out
