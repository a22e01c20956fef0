"""retentive: update a PyTorch model on each new chunk of data without forgetting the earlier ones."""

from retentive._version import __version__
from retentive.components import (
    AdversarialReplay,
    MixupReplay,
    CLSConsistency,
    Component,
    LogitMSE,
    MemoryCrossEntropy,
    PooledOutputDistillation,
    ShrinkAndPerturb,
    StepContext,
)
from retentive.errors import (
    DataError,
    MemoryShapeError,
    NonFiniteLossError,
    ReplicaMismatchError,
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
from retentive.state.loading import load_model
from retentive.memory import GreedyClassBalancedPolicy, ReplayBuffer, ReservoirPolicy, UnboundedBuffer
from retentive.memory.generative import VariationalAutoencoder
from retentive.updaters import (
    CLSExperienceReplayModelUpdater,
    DarkExperienceReplayModelUpdater,
    ExperienceReplayModelUpdater,
    FineTuningModelUpdater,
    GDumbModelUpdater,
    JointModelUpdater,
    ModelUpdater,
    OfflineExperienceReplayModelUpdater,
    PooledOutputDistillationExperienceReplayModelUpdater,
    SuperExperienceReplayModelUpdater,
)
from retentive.updaters.architectures import PackNetModelUpdater, ProgressiveNetworkModelUpdater
from retentive.updaters.rar import RetrospectiveAdversarialReplayModelUpdater
from retentive.updaters.generative import GenerativeReplayModelUpdater
from retentive.updaters.meta import MetaExperienceReplayModelUpdater, OnlineMetaLearningModelUpdater

__all__ = [
    "AdversarialReplay",
    "MixupReplay",
    "CLSConsistency",
    "CLSExperienceReplayModelUpdater",
    "Component",
    "DarkExperienceReplayModelUpdater",
    "DataError",
    "ExperienceReplayModelUpdater",
    "FineTuningModelUpdater",
    "GDumbModelUpdater",
    "GenerativeReplayModelUpdater",
    "GreedyClassBalancedPolicy",
    "JointModelUpdater",
    "Learner",
    "LogitMSE",
    "MemoryCrossEntropy",
    "MemoryShapeError",
    "MetaExperienceReplayModelUpdater",
    "ModelUpdater",
    "NonFiniteLossError",
    "OfflineExperienceReplayModelUpdater",
    "OnlineMetaLearningModelUpdater",
    "PackNetModelUpdater",
    "ProgressiveNetworkModelUpdater",
    "PooledOutputDistillation",
    "PooledOutputDistillationExperienceReplayModelUpdater",
    "ReplayBuffer",
    "ReplicaMismatchError",
    "ReservoirPolicy",
    "RetentiveError",
    "ShrinkAndPerturb",
    "StateError",
    "StateLockedError",
    "StepContext",
    "RetrospectiveAdversarialReplayModelUpdater",
    "SuperExperienceReplayModelUpdater",
    "UnboundedBuffer",
    "VariationalAutoencoder",
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
