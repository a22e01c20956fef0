"""Model updaters: the load → fit → save life cycle around a Learner."""

from retentive.updaters.base import ModelUpdater, split_batch
from retentive.updaters.baselines import FineTuningModelUpdater
from retentive.updaters.replay import DarkExperienceReplayModelUpdater, ExperienceReplayModelUpdater

__all__ = [
    "DarkExperienceReplayModelUpdater",
    "ExperienceReplayModelUpdater",
    "FineTuningModelUpdater",
    "ModelUpdater",
    "split_batch",
]
