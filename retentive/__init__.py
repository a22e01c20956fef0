"""retentive: update a PyTorch model on each new chunk of data without forgetting the earlier ones.

The public names below are imported on first use (PEP 562), so that ``import retentive`` and
``retentive --help`` do not pay for torch and Lightning until something needs them. Type checkers
and ``from retentive import X`` see them as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from retentive._version import __version__

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "CLSConsistency": "retentive.components",
    "CLSExperienceReplayModelUpdater": "retentive.updaters",
    "Component": "retentive.components",
    "DarkExperienceReplayModelUpdater": "retentive.updaters",
    "DataError": "retentive.errors",
    "ExperienceReplayModelUpdater": "retentive.updaters",
    "FineTuningModelUpdater": "retentive.updaters",
    "GDumbModelUpdater": "retentive.updaters",
    "GreedyClassBalancedPolicy": "retentive.memory",
    "JointModelUpdater": "retentive.updaters",
    "Learner": "retentive.learner",
    "LogitMSE": "retentive.components",
    "MemoryCrossEntropy": "retentive.components",
    "MemoryShapeError": "retentive.errors",
    "ModelUpdater": "retentive.updaters",
    "NonFiniteLossError": "retentive.errors",
    "OfflineExperienceReplayModelUpdater": "retentive.updaters",
    "PooledOutputDistillation": "retentive.components",
    "PooledOutputDistillationExperienceReplayModelUpdater": "retentive.updaters",
    "ReplayBuffer": "retentive.memory",
    "ReplicaMismatchError": "retentive.errors",
    "ReservoirPolicy": "retentive.memory",
    "RetentiveError": "retentive.errors",
    "ShrinkAndPerturb": "retentive.components",
    "StateError": "retentive.errors",
    "StateLockedError": "retentive.errors",
    "StepContext": "retentive.components",
    "SuperExperienceReplayModelUpdater": "retentive.updaters",
    "UnboundedBuffer": "retentive.memory",
    "accuracy": "retentive.evaluation",
    "accuracy_row": "retentive.evaluation",
    "average_accuracy": "retentive.evaluation",
    "backward_transfer": "retentive.evaluation",
    "forgetting": "retentive.evaluation",
    "forward_transfer": "retentive.evaluation",
    "load_model": "retentive.state.loading",
    "micro_average_accuracy": "retentive.evaluation",
    "AveragedGradientEpisodicMemory": "retentive.components",
    "ElasticWeightConsolidation": "retentive.components",
    "GradientEpisodicMemory": "retentive.components",
    "ICaRL": "retentive.components",
    "LearningWithoutForgetting": "retentive.components",
    "NearestMeanOfExemplars": "retentive.components",
    "SynapticIntelligence": "retentive.components",
    "icarl_classifier": "retentive.components",
    "AveragedGradientEpisodicMemoryModelUpdater": "retentive.updaters",
    "ElasticWeightConsolidationModelUpdater": "retentive.updaters",
    "ExperienceReplayAvalancheModelUpdater": "retentive.updaters",
    "GradientEpisodicMemoryModelUpdater": "retentive.updaters",
    "ICaRLModelUpdater": "retentive.updaters",
    "LearningWithoutForgettingModelUpdater": "retentive.updaters",
    "SynapticIntelligenceModelUpdater": "retentive.updaters",
}

_SUBPACKAGES = frozenset({"components", "data", "evaluation", "learner", "memory", "models", "state", "updaters"})

if TYPE_CHECKING:  # pragma: no cover - the eager form, for type checkers and IDEs
    from retentive.components import (
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
    from retentive.components import (
        AveragedGradientEpisodicMemory,
        ElasticWeightConsolidation,
        GradientEpisodicMemory,
        ICaRL,
        LearningWithoutForgetting,
        NearestMeanOfExemplars,
        SynapticIntelligence,
        icarl_classifier,
    )
    from retentive.updaters import (
        AveragedGradientEpisodicMemoryModelUpdater,
        ElasticWeightConsolidationModelUpdater,
        ExperienceReplayAvalancheModelUpdater,
        GradientEpisodicMemoryModelUpdater,
        ICaRLModelUpdater,
        LearningWithoutForgettingModelUpdater,
        SynapticIntelligenceModelUpdater,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if name in _SUBPACKAGES:  # ``retentive.updaters`` after a bare ``import retentive``, as before
            return importlib.import_module(f"retentive.{name}")
        raise AttributeError(f"module 'retentive' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "CLSConsistency",
    "CLSExperienceReplayModelUpdater",
    "Component",
    "DarkExperienceReplayModelUpdater",
    "DataError",
    "ExperienceReplayModelUpdater",
    "FineTuningModelUpdater",
    "GDumbModelUpdater",
    "GreedyClassBalancedPolicy",
    "JointModelUpdater",
    "Learner",
    "LogitMSE",
    "MemoryCrossEntropy",
    "MemoryShapeError",
    "ModelUpdater",
    "NonFiniteLossError",
    "OfflineExperienceReplayModelUpdater",
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
    "SuperExperienceReplayModelUpdater",
    "UnboundedBuffer",
    "__version__",
    "accuracy",
    "accuracy_row",
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "forward_transfer",
    "load_model",
    "micro_average_accuracy",
    "AveragedGradientEpisodicMemory",
    "AveragedGradientEpisodicMemoryModelUpdater",
    "ElasticWeightConsolidation",
    "ElasticWeightConsolidationModelUpdater",
    "ExperienceReplayAvalancheModelUpdater",
    "GradientEpisodicMemory",
    "GradientEpisodicMemoryModelUpdater",
    "ICaRL",
    "ICaRLModelUpdater",
    "LearningWithoutForgetting",
    "LearningWithoutForgettingModelUpdater",
    "NearestMeanOfExemplars",
    "SynapticIntelligence",
    "SynapticIntelligenceModelUpdater",
    "icarl_classifier",
]
