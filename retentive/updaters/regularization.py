"""Regularisation and distillation updaters (Renate's names and arguments): online EWC, SI, LwF.

Each is a :class:`~retentive.updaters.base.ModelUpdater` with one component; ``components=``
adds more (e.g. ``MemoryCrossEntropy`` with a ``memory_size`` gives EWC + ER), each with its own
weight. None keeps a memory unless ``memory_size`` is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from retentive.components.base import Component
from retentive.components.distillation import LearningWithoutForgetting
from retentive.components.regularizers import ElasticWeightConsolidation, SynapticIntelligence, trainable_parameters
from retentive.learner import OptimizerFactory
from retentive.updaters.base import ModelUpdater
from retentive.updaters.settings import LossFunction, OwnComponentsSettings

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack


class ElasticWeightConsolidationModelUpdater(ModelUpdater):
    """Online EWC (Schwarz et al., 2018): ``ewc_lambda * Σ F_i (θ_i - θ*_i)²`` added to the task
    loss, with ``F`` the Fisher diagonal of the model's predictive distribution over each chunk,
    accumulated across updates with decay ``ewc_gamma``.

    Args:
        ewc_lambda: the penalty's weight [0.4, Renate's default].
        ewc_gamma: the decay of the accumulated Fisher per update [1].
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        ewc_lambda: float = 0.4,
        ewc_gamma: float = 1.0,
        components: Sequence[Component] = (),
        **kwargs: Unpack[OwnComponentsSettings],
    ) -> None:
        trainable_parameters(model, "ElasticWeightConsolidationModelUpdater")
        own = ElasticWeightConsolidation(ewc_lambda, gamma=ewc_gamma)
        super().__init__(model, loss_fn, optimizer, [own, *components], **kwargs)


class SynapticIntelligenceModelUpdater(ModelUpdater):
    """Synaptic Intelligence (Zenke et al., 2017): ``si_c * Σ Ω_i (θ_i - θ*_i)²`` with Ω from the
    path integral of each parameter's contribution to the loss decrease, normalised by its total
    change squared plus ``si_epsilon``.

    Args:
        si_c: the penalty's weight ``c`` [1, Mammoth's tuned Seq-MNIST value].
        si_epsilon: the damping ``ξ`` [0.9, likewise].
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        si_c: float = 1.0,
        si_epsilon: float = 0.9,
        components: Sequence[Component] = (),
        **kwargs: Unpack[OwnComponentsSettings],
    ) -> None:
        trainable_parameters(model, "SynapticIntelligenceModelUpdater")
        own = SynapticIntelligence(si_c, epsilon=si_epsilon)
        super().__init__(model, loss_fn, optimizer, [own, *components], **kwargs)


class LearningWithoutForgettingModelUpdater(ModelUpdater):
    """Learning without Forgetting (Li & Hoiem, 2016): the task loss plus ``alpha`` times the KL
    divergence, at temperature ``temperature``, between the softened outputs of the model as it
    was at the start of the update and the model's, on the new samples and the classes seen
    before.

    Args:
        alpha: the distillation weight [1, Renate's default].
        temperature: the softmax temperature [2, Renate's default].
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        alpha: float = 1.0,
        temperature: float = 2.0,
        components: Sequence[Component] = (),
        **kwargs: Unpack[OwnComponentsSettings],
    ) -> None:
        own = LearningWithoutForgetting(alpha, temperature=temperature)
        super().__init__(model, loss_fn, optimizer, [own, *components], **kwargs)
