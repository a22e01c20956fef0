"""Task routing: models that need the task id declare it, and every caller passes it.

A model with a true ``takes_task_ids`` attribute is called as ``model(x, task_ids)`` by the
Learner (training, on new and memory samples alike) and by :mod:`retentive.evaluation`; every
other model is called as ``model(x)``. No base class is needed.
"""

from __future__ import annotations

from torch import Tensor, nn


def takes_task_ids(model: nn.Module) -> bool:
    """Whether ``model``'s forward expects ``(x, task_ids)``."""
    return bool(getattr(model, "takes_task_ids", False))


def forward_routed(model: nn.Module, x: Tensor, task_ids: Tensor | None) -> Tensor:
    """``model(x, task_ids)`` for a task-routed model, ``model(x)`` otherwise."""
    if takes_task_ids(model):
        return model(x, task_ids)
    return model(x)
