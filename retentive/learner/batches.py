"""What a training batch is: ``(inputs, targets[, task_ids])``, checked, or the same with the
samples' identity when the update's loader reads its chunk (:mod:`retentive.updaters.identified`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from retentive.errors import DataError
from retentive.memory.identity import IdentifiedBatch


def unpack_batch(batch: Any, task_id: int | str) -> tuple[Any, Tensor, Tensor, tuple[Tensor, ...] | None]:
    """``(inputs, targets, task_ids, identity)``: targets and task ids as int64 (missing task ids are
    ``task_id``, or 0 for a named task); ``identity`` the rows' ``(sample_rows, sample_ids)`` or ``None``."""
    identity = tuple(batch[3:]) if isinstance(batch, IdentifiedBatch) else None
    if identity is not None:
        batch = tuple(batch[:3])
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise DataError(
            f"a training batch must be (inputs, targets) or (inputs, targets, task_ids), got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        )
    x, y = batch[0], batch[1]
    if not torch.is_tensor(y) or y.dtype.is_floating_point or y.dim() != 1:
        raise DataError(
            f"targets must be a 1-d integer tensor of class indices, got "
            f"{getattr(y, 'dtype', type(y).__name__)} of shape {tuple(getattr(y, 'shape', ()))}"
        )
    t = batch[2] if len(batch) == 3 else torch.full_like(y, task_id if isinstance(task_id, int) else 0)
    return x, y.long(), t.long(), identity
