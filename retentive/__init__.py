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
    "AdversarialReplay": "retentive.components",
    "AveragedGradientEpisodicMemory": "retentive.components",
    "AveragedGradientEpisodicMemoryModelUpdater": "retentive.updaters",
    "CLSConsistency": "retentive.components",
    "CLSExperienceReplayModelUpdater": "retentive.updaters",
    "Component": "retentive.components",
    "DarkExperienceReplayModelUpdater": "retentive.updaters",
    "DataError": "retentive.errors",
    "ElasticWeightConsolidation": "retentive.components",
    "ElasticWeightConsolidationModelUpdater": "retentive.updaters",
    "ExperienceReplayAvalancheModelUpdater": "retentive.updaters",
    "ExperienceReplayModelUpdater": "retentive.updaters",
    "FineTuningModelUpdater": "retentive.updaters",
    "GDumbModelUpdater": "retentive.updaters",
    "GenerativeReplayModelUpdater": "retentive.updaters.generative",
    "GradientEpisodicMemory": "retentive.components",
    "GradientEpisodicMemoryModelUpdater": "retentive.updaters",
    "GreedyClassBalancedPolicy": "retentive.memory",
    "ICaRL": "retentive.components",
    "ICaRLModelUpdater": "retentive.updaters",
    "JointModelUpdater": "retentive.updaters",
    "KolmogorovSmirnovCovariateShiftDetector": "retentive.shift",
    "LabelShiftDetector": "retentive.shift",
    "Learner": "retentive.learner",
    "LearningWithoutForgetting": "retentive.components",
    "LearningWithoutForgettingModelUpdater": "retentive.updaters",
    "LogitMSE": "retentive.components",
    "MemoryCrossEntropy": "retentive.components",
    "MemoryBudgetError": "retentive.errors",
    "MemoryShapeError": "retentive.errors",
    "MMDCovariateShiftDetector": "retentive.shift",
    "MetaExperienceReplayModelUpdater": "retentive.updaters.meta",
    "MixupReplay": "retentive.components",
    "ModelUpdater": "retentive.updaters",
    "NearestMeanOfExemplars": "retentive.components",
    "NonFiniteLossError": "retentive.errors",
    "OfflineExperienceReplayModelUpdater": "retentive.updaters",
    "OnlineMetaLearningModelUpdater": "retentive.updaters.meta",
    "PackNetModelUpdater": "retentive.updaters.architectures",
    "PooledOutputDistillation": "retentive.components",
    "PooledOutputDistillationExperienceReplayModelUpdater": "retentive.updaters",
    "ProgressiveNetworkModelUpdater": "retentive.updaters.architectures",
    "ReplayBuffer": "retentive.memory",
    "ReplicaMismatchError": "retentive.errors",
    "ReservoirPolicy": "retentive.memory",
    "RetentiveError": "retentive.errors",
    "RetrospectiveAdversarialReplayModelUpdater": "retentive.updaters.rar",
    "ShiftResult": "retentive.shift",
    "ShrinkAndPerturb": "retentive.components",
    "StateError": "retentive.errors",
    "StateLockedError": "retentive.errors",
    "StateConflictError": "retentive.errors",
    "StepContext": "retentive.components",
    "SuperExperienceReplayModelUpdater": "retentive.updaters",
    "SynapticIntelligence": "retentive.components",
    "SynapticIntelligenceModelUpdater": "retentive.updaters",
    "UnboundedBuffer": "retentive.memory",
    "VariationalAutoencoder": "retentive.memory.generative",
    "accuracy": "retentive.evaluation",
    "accuracy_row": "retentive.evaluation",
    "average_accuracy": "retentive.evaluation",
    "backward_transfer": "retentive.evaluation",
    "detect_shift": "retentive.shift",
    "flip_metrics": "retentive.evaluation",
    "forgetting": "retentive.evaluation",
    "forward_transfer": "retentive.evaluation",
    "icarl_classifier": "retentive.components",
    "load_model": "retentive.state.loading",
    "micro_average_accuracy": "retentive.evaluation",
    "negative_flip_impact": "retentive.evaluation",
    "negative_flip_rate": "retentive.evaluation",
    "positive_flip_impact": "retentive.evaluation",
    "positive_flip_rate": "retentive.evaluation",
    "LearningToPromptModelUpdater": "retentive.updaters.prompts",
    "LearningToPromptReplayModelUpdater": "retentive.updaters.prompts",
    "SPeftModelUpdater": "retentive.updaters.prompts",
    "RepeatedDistillationModelUpdater": "retentive.updaters.repeated_distillation",
    "PromptKeyQueryLoss": "retentive.components",
    "TaskPrototypes": "retentive.components",
    "VisionTransformer": "retentive.models.vit",
    "LearningToPromptTransformer": "retentive.models.l2p",
    "SPromptTransformer": "retentive.models.sprompts",
}

_SUBPACKAGES = frozenset({"components", "data", "evaluation", "learner", "memory", "models", "shift", "state", "updaters"})

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
        MemoryBudgetError,
        MemoryShapeError,
        NonFiniteLossError,
        ReplicaMismatchError,
        RetentiveError,
        StateConflictError,
        StateError,
        StateLockedError,
    )
    from retentive.evaluation import (
        accuracy,
        accuracy_row,
        average_accuracy,
        backward_transfer,
        flip_metrics,
        forgetting,
        forward_transfer,
        micro_average_accuracy,
        negative_flip_impact,
        negative_flip_rate,
        positive_flip_impact,
        positive_flip_rate,
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
    from retentive.components import AdversarialReplay, MixupReplay
    from retentive.memory.generative import VariationalAutoencoder
    from retentive.updaters.architectures import PackNetModelUpdater, ProgressiveNetworkModelUpdater
    from retentive.updaters.generative import GenerativeReplayModelUpdater
    from retentive.updaters.meta import MetaExperienceReplayModelUpdater, OnlineMetaLearningModelUpdater
    from retentive.updaters.rar import RetrospectiveAdversarialReplayModelUpdater
    from retentive.shift import (
        KolmogorovSmirnovCovariateShiftDetector,
        LabelShiftDetector,
        MMDCovariateShiftDetector,
        ShiftResult,
        detect_shift,
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
    from retentive.components.prompts import PromptKeyQueryLoss, TaskPrototypes
    from retentive.models.l2p import LearningToPromptTransformer
    from retentive.models.sprompts import SPromptTransformer
    from retentive.models.vit import VisionTransformer
    from retentive.updaters.prompts import (
        LearningToPromptModelUpdater,
        LearningToPromptReplayModelUpdater,
        SPeftModelUpdater,
    )
    from retentive.updaters.repeated_distillation import RepeatedDistillationModelUpdater


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


__all__ = sorted(_EXPORTS) + ["__version__"]
