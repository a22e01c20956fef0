"""Reference models, the multi-head wrapper, task routing, feature taps and re-initialisation."""

from retentive.models.cnn import SmallCNN
from retentive.models.masks import PackedNetwork
from retentive.models.progressive import ProgressiveNetwork
from retentive.models.mlp import MLP
from retentive.models.multihead import MultiHeadClassifier
from retentive.models.reinit import check_reinitializable, reinitialize_
from retentive.models.routing import forward_routed, takes_task_ids
from retentive.models.taps import FeatureTaps
from retentive.models.kmeans import kmeans
from retentive.models.l2p import LearningToPromptTransformer
from retentive.models.sprompts import SPromptTransformer
from retentive.models.vit import VisionTransformer

__all__ = [
    "MLP",
    "FeatureTaps",
    "MultiHeadClassifier",
    "PackedNetwork",
    "ProgressiveNetwork",
    "SmallCNN",
    "check_reinitializable",
    "forward_routed",
    "reinitialize_",
    "takes_task_ids",
    "LearningToPromptTransformer",
    "SPromptTransformer",
    "VisionTransformer",
    "kmeans",
]
