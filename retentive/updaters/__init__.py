"""Model updaters: the load → fit → save life cycle around a Learner."""

from retentive.updaters.architectures import PackNetModelUpdater, ProgressiveNetworkModelUpdater
from retentive.updaters.meta import MetaExperienceReplayModelUpdater, OnlineMetaLearningModelUpdater
from retentive.updaters.rar import RetrospectiveAdversarialReplayModelUpdater
from retentive.updaters.generative import GenerativeReplayModelUpdater
from retentive.updaters.base import ModelUpdater, split_batch
from retentive.updaters.baselines import FineTuningModelUpdater, GDumbModelUpdater, JointModelUpdater
from retentive.updaters.replay import (
    CLSExperienceReplayModelUpdater,
    DarkExperienceReplayModelUpdater,
    ExperienceReplayModelUpdater,
    OfflineExperienceReplayModelUpdater,
    PooledOutputDistillationExperienceReplayModelUpdater,
    SuperExperienceReplayModelUpdater,
)
from retentive.updaters.regularization import (
    ElasticWeightConsolidationModelUpdater,
    LearningWithoutForgettingModelUpdater,
    SynapticIntelligenceModelUpdater,
)
from retentive.updaters.episodic import (
    AveragedGradientEpisodicMemoryModelUpdater,
    ExperienceReplayAvalancheModelUpdater,
    GradientEpisodicMemoryModelUpdater,
)
from retentive.updaters.icarl import ICaRLModelUpdater
from retentive.updaters.prompts import (
    LearningToPromptModelUpdater,
    LearningToPromptReplayModelUpdater,
    SPeftModelUpdater,
)
from retentive.updaters.repeated_distillation import RepeatedDistillationModelUpdater

__all__ = [
    "CLSExperienceReplayModelUpdater",
    "DarkExperienceReplayModelUpdater",
    "ExperienceReplayModelUpdater",
    "FineTuningModelUpdater",
    "GDumbModelUpdater",
    "GenerativeReplayModelUpdater",
    "JointModelUpdater",
    "MetaExperienceReplayModelUpdater",
    "ModelUpdater",
    "OfflineExperienceReplayModelUpdater",
    "OnlineMetaLearningModelUpdater",
    "PackNetModelUpdater",
    "ProgressiveNetworkModelUpdater",
    "PooledOutputDistillationExperienceReplayModelUpdater",
    "RetrospectiveAdversarialReplayModelUpdater",
    "SuperExperienceReplayModelUpdater",
    "split_batch",
    "AveragedGradientEpisodicMemoryModelUpdater",
    "ElasticWeightConsolidationModelUpdater",
    "ExperienceReplayAvalancheModelUpdater",
    "GradientEpisodicMemoryModelUpdater",
    "ICaRLModelUpdater",
    "LearningWithoutForgettingModelUpdater",
    "SynapticIntelligenceModelUpdater",
    "LearningToPromptModelUpdater",
    "LearningToPromptReplayModelUpdater",
    "RepeatedDistillationModelUpdater",
    "SPeftModelUpdater",
]
