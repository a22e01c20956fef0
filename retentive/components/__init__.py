"""Loss components: one weighted term each, combined by the Learner.

Besides the names imported below, every component a registered method declares under this package
(:mod:`retentive.methods`) is exported, so a new component module needs no edit of this file.
"""

import importlib

from retentive.components.adversarial import AdversarialReplay, MixupReplay, nearest_other_class, targeted_mifgsm
from retentive.components.base import Batch, Component, StepContext, UpdateContext, reduce_task_loss
from retentive.components.cls import CLSConsistency, ema_decay, ema_update_, select_teacher_logits
from retentive.components.distillation import (
    ICaRL,
    LearningWithoutForgetting,
    NearestMeanOfExemplars,
    distillation_kl,
    icarl_classifier,
    nme_scores,
)
from retentive.components.exemplars import herding_selection
from retentive.components.pod import DISTILLATION_TYPES, PooledOutputDistillation, pod_distance, pod_pool
from retentive.components.projection import (
    AveragedGradientEpisodicMemory,
    GradientEpisodicMemory,
    agem_project,
    gem_project,
)
from retentive.components.prompts import PromptKeyQueryLoss, TaskPrototypes
from retentive.components.regularizers import (
    ElasticWeightConsolidation,
    SynapticIntelligence,
    fisher_diagonal,
    quadratic_penalty,
    si_importance,
)
from retentive.components.replay import LogitMSE, MemoryCrossEntropy, logit_mse
from retentive.components.shrink_perturb import ShrinkAndPerturb, shrink_perturb_

__all__ = [
    "PromptKeyQueryLoss",
    "TaskPrototypes",
    "AdversarialReplay",
    "MixupReplay",
    "nearest_other_class",
    "targeted_mifgsm",
    "Batch",
    "UpdateContext",
    "reduce_task_loss",
    "CLSConsistency",
    "Component",
    "DISTILLATION_TYPES",
    "LogitMSE",
    "MemoryCrossEntropy",
    "PooledOutputDistillation",
    "ShrinkAndPerturb",
    "StepContext",
    "ema_decay",
    "ema_update_",
    "logit_mse",
    "pod_distance",
    "pod_pool",
    "select_teacher_logits",
    "shrink_perturb_",
    "AveragedGradientEpisodicMemory",
    "ElasticWeightConsolidation",
    "GradientEpisodicMemory",
    "ICaRL",
    "LearningWithoutForgetting",
    "NearestMeanOfExemplars",
    "SynapticIntelligence",
    "agem_project",
    "distillation_kl",
    "fisher_diagonal",
    "gem_project",
    "herding_selection",
    "icarl_classifier",
    "nme_scores",
    "quadratic_penalty",
    "si_importance",
]

from retentive.methods.registry import component_exports as _component_exports

for _name, _module in _component_exports(entry_points=False).items():
    if _module.startswith(f"{__name__}.") and _name not in __all__:
        globals()[_name] = getattr(importlib.import_module(_module), _name)
        __all__.append(_name)
