"""Loss components: one weighted term each, combined by the Learner."""

from retentive.components.base import Component, StepContext
from retentive.components.replay import LogitMSE, MemoryCrossEntropy, logit_mse

__all__ = ["Component", "LogitMSE", "MemoryCrossEntropy", "StepContext", "logit_mse"]
