"""Regularisation: EWC, Synaptic Intelligence and Learning without Forgetting (no memory)."""

from retentive.methods.registry import family

method = family("retentive.updaters.regularization", memory_policy=None)

method(
    "ewc",
    "ElasticWeightConsolidationModelUpdater",
    "online EWC: a Fisher-weighted quadratic penalty pulling weights toward the last update's",
    renate_name="Avalanche-EWC",
    components=("ElasticWeightConsolidation",),
)
method(
    "si",
    "SynapticIntelligenceModelUpdater",
    "Synaptic Intelligence: a quadratic penalty weighted by each weight's path-integral importance",
    components=("SynapticIntelligence",),
)
method(
    "lwf",
    "LearningWithoutForgettingModelUpdater",
    "the task loss plus alpha x the KL to the previous model's softened outputs",
    renate_name="Avalanche-LwF",
    components=("LearningWithoutForgetting",),
)
