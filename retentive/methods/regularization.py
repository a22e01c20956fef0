"""Regularisation: EWC, Synaptic Intelligence and Learning without Forgetting (no memory)."""

from retentive.methods.registry import MethodSpec, register

_UPDATERS, _COMPONENTS = "retentive.updaters.regularization", "retentive.components"

register(
    MethodSpec(
        "ewc",
        f"{_UPDATERS}.ElasticWeightConsolidationModelUpdater",
        "online EWC: a Fisher-weighted quadratic penalty pulling weights toward the last update's",
        renate_name="Avalanche-EWC",
        configs=("ewc",),
        components=(f"{_COMPONENTS}.ElasticWeightConsolidation",),
        memory_policy=None,
    )
)
register(
    MethodSpec(
        "si",
        f"{_UPDATERS}.SynapticIntelligenceModelUpdater",
        "Synaptic Intelligence: a quadratic penalty weighted by each weight's path-integral importance",
        configs=("si",),
        components=(f"{_COMPONENTS}.SynapticIntelligence",),
        memory_policy=None,
    )
)
register(
    MethodSpec(
        "lwf",
        f"{_UPDATERS}.LearningWithoutForgettingModelUpdater",
        "the task loss plus alpha x the KL to the previous model's softened outputs",
        renate_name="Avalanche-LwF",
        configs=("lwf",),
        components=(f"{_COMPONENTS}.LearningWithoutForgetting",),
        memory_policy=None,
    )
)
