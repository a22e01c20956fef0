"""The Learner (one training step, a LightningModule), its deferred checks and its transforms."""

from retentive.learner.core import Learner, OptimizerFactory, SchedulerFactory
from retentive.learner.losses import normalized_total

__all__ = ["Learner", "OptimizerFactory", "SchedulerFactory", "normalized_total"]
