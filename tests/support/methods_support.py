"""Builders shared by the regularisation/distillation/projection end-to-end tests and the
subprocess that re-reads their state folders."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from er_family_support import QUIET

import retentive as R
from retentive.models import MLP


def _components(name: str) -> list[R.Component]:
    if name == "er_ewc":  # ER + EWC, no new class: any component beside the memory cross-entropy
        return [R.MemoryCrossEntropy(1.0), R.ElasticWeightConsolidation(0.5)]
    if name == "lwf_si":
        return [R.SynapticIntelligence(0.5, epsilon=0.1)]
    return []


#: name -> (updater class, its arguments) for the small end-to-end runs.
UPDATERS: dict[str, tuple[type, dict[str, Any]]] = {
    "ewc": (R.ElasticWeightConsolidationModelUpdater, dict(ewc_lambda=1.0, ewc_gamma=0.9, batch_size=10)),
    "si": (R.SynapticIntelligenceModelUpdater, dict(si_c=0.5, si_epsilon=0.1, batch_size=10)),
    "lwf": (R.LearningWithoutForgettingModelUpdater, dict(batch_size=10)),
    "gem": (R.GradientEpisodicMemoryModelUpdater, dict(memory_size=60, batch_size=20)),
    "agem": (R.AveragedGradientEpisodicMemoryModelUpdater, dict(memory_size=60, sample_size=16, batch_size=20)),
    "icarl": (R.ICaRLModelUpdater, dict(memory_size=60, batch_size=20)),
    "er_avalanche": (R.ExperienceReplayAvalancheModelUpdater, dict(memory_size=60, batch_size=20)),
    "er_ewc": (R.ModelUpdater, dict(memory_size=60, batch_size=20)),
    "lwf_si": (R.LearningWithoutForgettingModelUpdater, dict(batch_size=10)),
}


def build(name: str, **kwargs: Any) -> R.ModelUpdater:
    """A fresh MLP and the named updater (SGD lr 0.1, seed 0) with ``kwargs`` on top."""
    cls, arguments = UPDATERS[name]
    torch.manual_seed(0)
    optimizer = partial(torch.optim.SGD, lr=0.1)
    extra = _components(name)
    if extra:
        arguments = dict(arguments, components=extra)
    return cls(MLP(), torch.nn.CrossEntropyLoss(), optimizer, seed=0, **arguments, **QUIET, **kwargs)
