"""retentive: update a PyTorch model on each new chunk of data without forgetting the earlier ones.

The public names below are imported on first use (PEP 562), so that ``import retentive`` and
``retentive --help`` do not pay for torch and Lightning until something needs them. Every method's
updater, components and models are exported as its spec in :mod:`retentive.methods` declares, a
method registered later (by a plug-in) included. The ``TYPE_CHECKING`` block lists the built-in
ones for type checkers and IDEs, which cannot read a registry; a test keeps it within the exports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from retentive._version import __version__
from retentive.methods.registry import exports

#: public name -> the module that defines it, for the names that belong to no method; the methods'
#: updaters, components and models come from the registry (:mod:`retentive.methods`)
_CORE_EXPORTS: dict[str, str] = {
    "Component": "retentive.components",
    "DataError": "retentive.errors",
    "GreedyClassBalancedPolicy": "retentive.memory",
    "KolmogorovSmirnovCovariateShiftDetector": "retentive.shift",
    "LabelShiftDetector": "retentive.shift",
    "Learner": "retentive.learner",
    "MMDCovariateShiftDetector": "retentive.shift",
    "MemoryBudgetError": "retentive.errors",
    "MemoryShapeError": "retentive.errors",
    "ModelUpdater": "retentive.updaters",
    "NonFiniteLossError": "retentive.errors",
    "ReplayBuffer": "retentive.memory",
    "ReplicaMismatchError": "retentive.errors",
    "ReservoirPolicy": "retentive.memory",
    "RetentiveError": "retentive.errors",
    "ShiftResult": "retentive.shift",
    "StateConflictError": "retentive.errors",
    "StateError": "retentive.errors",
    "StateLockedError": "retentive.errors",
    "StepContext": "retentive.components",
    "UnboundedBuffer": "retentive.memory",
    "accuracy": "retentive.evaluation",
    "accuracy_row": "retentive.evaluation",
    "average_accuracy": "retentive.evaluation",
    "backward_transfer": "retentive.evaluation",
    "detect_shift": "retentive.shift",
    "flip_metrics": "retentive.evaluation",
    "forgetting": "retentive.evaluation",
    "forward_transfer": "retentive.evaluation",
    "load_model": "retentive.state.loading",
    "micro_average_accuracy": "retentive.evaluation",
    "negative_flip_impact": "retentive.evaluation",
    "negative_flip_rate": "retentive.evaluation",
    "positive_flip_impact": "retentive.evaluation",
    "positive_flip_rate": "retentive.evaluation",
}
_EXPORTS: dict[str, str] = {**_CORE_EXPORTS, **exports(entry_points=False)}

_SUBPACKAGES = frozenset(
    {"components", "data", "evaluation", "learner", "memory", "models", "shift", "state", "updaters"}
)

if TYPE_CHECKING:  # pragma: no cover - the eager form, for type checkers and IDEs
    from retentive.components import (
        AdversarialReplay,
        AveragedGradientEpisodicMemory,
        CLSConsistency,
        Component,
        ElasticWeightConsolidation,
        GradientEpisodicMemory,
        ICaRL,
        LearningWithoutForgetting,
        LogitMSE,
        MemoryCrossEntropy,
        MixupReplay,
        NearestMeanOfExemplars,
        PooledOutputDistillation,
        ShrinkAndPerturb,
        StepContext,
        SynapticIntelligence,
        icarl_classifier,
    )
    from retentive.components.prompts import PromptKeyQueryLoss, TaskPrototypes
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
    from retentive.memory import GreedyClassBalancedPolicy, ReplayBuffer, ReservoirPolicy, UnboundedBuffer
    from retentive.memory.generative import VariationalAutoencoder
    from retentive.models.l2p import LearningToPromptTransformer
    from retentive.models.sprompts import SPromptTransformer
    from retentive.models.vit import VisionTransformer
    from retentive.shift import (
        KolmogorovSmirnovCovariateShiftDetector,
        LabelShiftDetector,
        MMDCovariateShiftDetector,
        ShiftResult,
        detect_shift,
    )
    from retentive.state.loading import load_model
    from retentive.updaters import ModelUpdater
    from retentive.updaters.architectures import PackNetModelUpdater, ProgressiveNetworkModelUpdater
    from retentive.updaters.baselines import FineTuningModelUpdater, GDumbModelUpdater, JointModelUpdater
    from retentive.updaters.episodic import (
        AveragedGradientEpisodicMemoryModelUpdater,
        ExperienceReplayAvalancheModelUpdater,
        GradientEpisodicMemoryModelUpdater,
    )
    from retentive.updaters.generative import GenerativeReplayModelUpdater
    from retentive.updaters.icarl import ICaRLModelUpdater
    from retentive.updaters.meta import MetaExperienceReplayModelUpdater, OnlineMetaLearningModelUpdater
    from retentive.updaters.prompts import (
        LearningToPromptModelUpdater,
        LearningToPromptReplayModelUpdater,
        SPeftModelUpdater,
    )
    from retentive.updaters.rar import RetrospectiveAdversarialReplayModelUpdater
    from retentive.updaters.regularization import (
        ElasticWeightConsolidationModelUpdater,
        LearningWithoutForgettingModelUpdater,
        SynapticIntelligenceModelUpdater,
    )
    from retentive.updaters.repeated_distillation import RepeatedDistillationModelUpdater
    from retentive.updaters.replay import (
        CLSExperienceReplayModelUpdater,
        DarkExperienceReplayModelUpdater,
        ExperienceReplayModelUpdater,
        OfflineExperienceReplayModelUpdater,
        PooledOutputDistillationExperienceReplayModelUpdater,
        SuperExperienceReplayModelUpdater,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None and not name.startswith("__"):  # a method registered since, by a plug-in
        module = exports().get(name)
    if module is None:
        if name in _SUBPACKAGES:  # ``retentive.updaters`` after a bare ``import retentive``, as before
            return importlib.import_module(f"retentive.{name}")
        raise AttributeError(f"module 'retentive' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(exports()))


__all__ = sorted(_EXPORTS) + ["__version__"]
