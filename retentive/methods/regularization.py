"""Regularisation: EWC, Synaptic Intelligence and Learning without Forgetting (no memory)."""

from retentive.methods.registry import family

method = family("retentive.updaters.regularization", memory_policy=None)

method(
    "ewc",
    "ElasticWeightConsolidationModelUpdater",
    "online EWC: a Fisher-weighted quadratic penalty pulling weights toward the last update's",
    renate_name="Avalanche-EWC",
    components=("ElasticWeightConsolidation",),
    paper="Kirkpatrick et al., PNAS 2017: Overcoming Catastrophic Forgetting in Neural Networks (arXiv:1612.00796); online form: Schwarz et al., ICML 2018: Progress & Compress (arXiv:1805.06370)",
)
method(
    "si",
    "SynapticIntelligenceModelUpdater",
    "Synaptic Intelligence: a quadratic penalty weighted by each weight's path-integral importance",
    components=("SynapticIntelligence",),
    paper="Zenke, Poole & Ganguli, ICML 2017: Continual Learning Through Synaptic Intelligence (arXiv:1703.04200)",
)
method(
    "lwf",
    "LearningWithoutForgettingModelUpdater",
    "the task loss plus alpha x the KL to the previous model's softened outputs",
    renate_name="Avalanche-LwF",
    components=("LearningWithoutForgetting",),
    paper="Li & Hoiem, ECCV 2016: Learning without Forgetting (arXiv:1606.09282)",
)
