"""Reference models, the multi-head wrapper, task routing and feature taps."""

from retentive.models.mlp import MLP
from retentive.models.multihead import MultiHeadClassifier
from retentive.models.routing import forward_routed, takes_task_ids
from retentive.models.taps import FeatureTaps

__all__ = ["MLP", "FeatureTaps", "MultiHeadClassifier", "forward_routed", "takes_task_ids"]
