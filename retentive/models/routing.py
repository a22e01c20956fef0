"""Task routing: models that need the task id declare it, and every caller passes it.

A model with a true ``takes_task_ids`` attribute is called as ``model(x, task_ids)`` by the
Learner (training, on new and memory samples alike) and by :mod:`retentive.evaluation`; every
other model is called as ``model(x)``. No base class is needed. The helpers live with the other
model capabilities in :mod:`retentive.models.protocol`; this module keeps the import path.
"""

from __future__ import annotations

from retentive.models.protocol import forward_routed, takes_task_ids

__all__ = ["forward_routed", "takes_task_ids"]
