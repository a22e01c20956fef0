"""Reference models and feature taps."""

from retentive.models.mlp import MLP
from retentive.models.taps import FeatureTaps

__all__ = ["MLP", "FeatureTaps"]
