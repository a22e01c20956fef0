"""retentive: update a PyTorch model on each new chunk of data without forgetting the earlier ones."""

from retentive._version import __version__
from retentive.components import Component, LogitMSE, MemoryCrossEntropy, StepContext
from retentive.errors import (
    DataError,
    MemoryShapeError,
    NonFiniteLossError,
    RetentiveError,
    StateError,
    StateLockedError,
)
from retentive.evaluation import (
    accuracy,
    accuracy_row,
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    micro_average_accuracy,
)
from retentive.learner import Learner
from retentive.loading import load_model
from retentive.memory import ReplayBuffer, ReservoirPolicy
from retentive.updaters import (
    DarkExperienceReplayModelUpdater,
    ExperienceReplayModelUpdater,
    FineTuningModelUpdater,
    ModelUpdater,
)

__all__ = [
    "Component",
    "DarkExperienceReplayModelUpdater",
    "DataError",
    "ExperienceReplayModelUpdater",
    "FineTuningModelUpdater",
    "Learner",
    "LogitMSE",
    "MemoryCrossEntropy",
    "MemoryShapeError",
    "ModelUpdater",
    "NonFiniteLossError",
    "ReplayBuffer",
    "ReservoirPolicy",
    "RetentiveError",
    "StateError",
    "StateLockedError",
    "StepContext",
    "__version__",
    "accuracy",
    "accuracy_row",
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "forward_transfer",
    "load_model",
    "micro_average_accuracy",
]
