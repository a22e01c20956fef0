"""Reference models, feature taps, and re-initialisation."""

from retentive.models.cnn import SmallCNN
from retentive.models.mlp import MLP
from retentive.models.reinit import check_reinitializable, reinitialize_
from retentive.models.taps import FeatureTaps

__all__ = ["MLP", "FeatureTaps", "SmallCNN", "check_reinitializable", "reinitialize_"]
