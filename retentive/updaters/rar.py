"""Retrospective adversarial replay (Kumari et al., 2022) as components on experience replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from retentive.components.adversarial import AdversarialReplay, MixupReplay
from retentive.components.base import Component
from retentive.components.replay import MemoryCrossEntropy
from retentive.learner import OptimizerFactory
from retentive.updaters.base import ModelUpdater
from retentive.updaters.settings import FixedMemorySettings, LossFunction
from retentive.updaters.signature import refusing

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack


class RetrospectiveAdversarialReplayModelUpdater(ModelUpdater):
    """ER whose replayed samples are mixed up and, in a second term, adversarially perturbed toward
    their nearest current-task neighbour (:mod:`retentive.components.adversarial`).

    Arguments and defaults are Avalanche's ``RARPlugin``'s: the loss is the new-data loss plus
    ``1 - beta_coef`` times the (mixup) replay loss plus ``1 - beta_coef`` times the adversarial
    replay loss (``beta_coef`` is taken as 0 without adversarial replay, as there), combined by the
    usual loss normalisation (``loss_normalization``).

    Args:
        batch_size_mem: memory samples per step (the new batch is ``batch_size``).
        mem_size: the reservoir memory's capacity [200].
        opt_lr: the look-ahead step's learning rate [0.1].
        name_ext_layer: the feature layer (module name) [the input of the last linear/conv layer].
        use_adversarial_replay: add the adversarial term [True].
        use_mixup: mix replayed samples up [True]; else plain memory cross-entropy.
        coef_lambda: mixup's Beta parameter [1].
        beta_coef: see above [0.4].
        decay_factor_fgsm, epsilon_fgsm, iter_fgsm: the attack's momentum, L-inf radius and steps
            [1.0, 0.0314, 2].
        input_range: valid input range of perturbed samples [(0, 1)]; ``None`` for none.
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but the memory's size
            and batch, which are ``mem_size`` and ``batch_size_mem`` here.
    """

    refused_arguments = refusing(
        ("memory_size", "memory_batch_size", "batch_memory_frac", "components"),
        "sets {name} itself (use mem_size and batch_size_mem)",
    )

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        batch_size_mem: int,
        mem_size: int = 200,
        opt_lr: float = 0.1,
        name_ext_layer: str | None = None,
        use_adversarial_replay: bool = True,
        use_mixup: bool = True,
        coef_lambda: float = 1.0,
        beta_coef: float = 0.4,
        decay_factor_fgsm: float = 1.0,
        epsilon_fgsm: float = 0.0314,
        iter_fgsm: int = 2,
        input_range: tuple[float, float] | None = (0.0, 1.0),
        **kwargs: Unpack[FixedMemorySettings],
    ) -> None:
        if not 0.0 <= float(beta_coef) <= 1.0:
            raise ValueError(f"beta_coef must lie in [0, 1], got {beta_coef}")
        weight = 1.0 - (float(beta_coef) if use_adversarial_replay else 0.0)
        replay: Component = MixupReplay(weight, coef_lambda) if use_mixup else MemoryCrossEntropy(weight)
        own = [replay]
        if use_adversarial_replay:
            own.append(
                AdversarialReplay(
                    weight, epsilon_fgsm, iter_fgsm, decay_factor_fgsm, opt_lr, name_ext_layer, input_range
                )
            )
        super().__init__(model, loss_fn, optimizer, own, mem_size, memory_batch_size=batch_size_mem, **kwargs)
