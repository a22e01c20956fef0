"""Reference models (MLP, SmallCNN, ResNet18, ViTs), the model protocol and its helpers, the multi-head wrapper, feature taps and re-initialisation."""

from retentive.models.cnn import SmallCNN
from retentive.models.device import prepare_model
from retentive.models.kmeans import kmeans
from retentive.models.l2p import LearningToPromptTransformer
from retentive.models.masks import PackedNetwork
from retentive.models.mlp import MLP
from retentive.models.multihead import MultiHeadClassifier
from retentive.models.progressive import ProgressiveNetwork
from retentive.models.protocol import (
    ContinualModel,
    FeatureLayerModel,
    GrowingModel,
    TaskRoutedModel,
    adapt_model,
    can_adapt,
    feature_layer,
    forward_routed,
    takes_task_ids,
)
from retentive.models.reinit import check_reinitializable, reinitialize_
from retentive.models.resnet import ResNet18
from retentive.models.sprompts import SPromptTransformer
from retentive.models.taps import FeatureTap, FeatureTaps
from retentive.models.vit import VisionTransformer

__all__ = [
    "MLP",
    "ContinualModel",
    "FeatureLayerModel",
    "FeatureTap",
    "FeatureTaps",
    "GrowingModel",
    "TaskRoutedModel",
    "adapt_model",
    "can_adapt",
    "feature_layer",
    "MultiHeadClassifier",
    "PackedNetwork",
    "ProgressiveNetwork",
    "ResNet18",
    "SmallCNN",
    "check_reinitializable",
    "forward_routed",
    "reinitialize_",
    "takes_task_ids",
    "LearningToPromptTransformer",
    "SPromptTransformer",
    "VisionTransformer",
    "kmeans",
    "prepare_model",
]
