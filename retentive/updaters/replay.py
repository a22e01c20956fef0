"""The experience-replay family (Renate's names and defaults): ER, DER/DER++, POD-ER, CLS-ER,
Super-ER and Offline-ER."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn
from torch.utils.data import Dataset

from retentive.components.base import Component
from retentive.components.cls import CLSConsistency
from retentive.components.pod import PooledOutputDistillation
from retentive.components.replay import LogitMSE, MemoryCrossEntropy
from retentive.components.shrink_perturb import ShrinkAndPerturb
from retentive.data.streaming import chunk_length
from retentive.learner import OptimizerFactory
from retentive.models.protocol import hidden_layers
from retentive.updaters.base import ModelUpdater
from retentive.updaters.chunks import add_chunk
from retentive.updaters.settings import LossFunction, OfflineSettings, ReplaySettings
from retentive.updaters.signature import refusing

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack


class ExperienceReplayModelUpdater(ModelUpdater):
    """ER: the task loss on new data plus ``alpha`` times the task loss on replayed memory.

    Args:
        alpha: weight of the memory cross-entropy [1].
        memory_size: replay memory capacity [500 in most benchmarks; required here].
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        alpha: float = 1.0,
        components: Sequence[Component] = (),
        **kwargs: Unpack[ReplaySettings],
    ) -> None:
        super().__init__(model, loss_fn, optimizer, [MemoryCrossEntropy(alpha), *components], memory_size, **kwargs)


class DarkExperienceReplayModelUpdater(ModelUpdater):
    """DER / DER++: match the logits stored with each memory sample (``alpha``), plus, for
    DER++ (``beta > 0``), the task loss on the same memory batch (``beta``).

    Args:
        alpha: weight of the logit MSE [1].
        beta: weight of the memory cross-entropy [1]; 0 gives DER.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        alpha: float = 1.0,
        beta: float = 1.0,
        components: Sequence[Component] = (),
        **kwargs: Unpack[ReplaySettings],
    ) -> None:
        own = [LogitMSE(alpha)] + ([MemoryCrossEntropy(beta)] if beta > 0 else [])
        super().__init__(model, loss_fn, optimizer, [*own, *components], memory_size, **kwargs)


def resolve_feature_layers(model: nn.Module, feature_layers: Sequence[str] | None) -> tuple[str, ...]:
    """The layers to distil: ``feature_layers`` if given, else the model's ``feature_layers`` attribute."""
    if feature_layers is None:
        feature_layers = hidden_layers(model)
    if isinstance(feature_layers, str) or not feature_layers:
        names = [name for name, _ in model.named_modules() if name]
        raise ValueError(
            f"POD needs feature_layers, a list of submodule names of {type(model).__name__} to distil "
            f"(it has {names}); pass feature_layers=[...] or give the model a feature_layers attribute"
        )
    modules = dict(model.named_modules())
    missing = [name for name in feature_layers if name not in modules]
    if missing:
        raise ValueError(
            f"feature_layers {missing} are not submodules of {type(model).__name__}; "
            f"it has {[name for name in modules if name]}"
        )
    return tuple(dict.fromkeys(feature_layers))


class PooledOutputDistillationExperienceReplayModelUpdater(ModelUpdater):
    """POD-ER: the task loss on new data plus ``alpha`` times POD on replayed samples.

    As in Renate, this updater's only memory term is POD: there is no cross-entropy on replayed
    samples (add one with Super-ER's ``der_beta`` if the classifier must see old classes).

    Args:
        alpha: weight of the POD term [1].
        distillation_type: ``spatial`` [default], ``channel``, ``width``, ``height``, ``gap`` or
            ``pixel`` (see :mod:`retentive.components.pod`).
        normalize: L2-normalise the pooled features [True].
        feature_layers: submodule names whose outputs are distilled; default the model's
            ``feature_layers`` attribute (``MLP`` and ``SmallCNN`` have one).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        alpha: float = 1.0,
        distillation_type: str = "spatial",
        normalize: bool = True,
        feature_layers: Sequence[str] | None = None,
        components: Sequence[Component] = (),
        **kwargs: Unpack[ReplaySettings],
    ) -> None:
        layers = resolve_feature_layers(model, feature_layers)
        pod = PooledOutputDistillation(alpha, layers, distillation_type, normalize)
        super().__init__(model, loss_fn, optimizer, [pod, *components], memory_size, **kwargs)
        self.hyperparameters["feature_layers"] = list(layers)  # as resolved from the model


class CLSExperienceReplayModelUpdater(ModelUpdater):
    """CLS-ER: memory cross-entropy (``alpha``) plus consistency with the more confident of a
    plastic and a stable EMA teacher (``beta``).

    Args:
        alpha: weight of the memory cross-entropy [0.5].
        beta: weight of the consistency MSE [0.1].
        stable_model_update_weight, plastic_model_update_weight: largest EMA decays [0.999, 0.999].
        stable_model_update_probability, plastic_model_update_probability: chance of a teacher
            update after each step [0.7, 0.9]; the plastic one must be the more frequent.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        alpha: float = 0.5,
        beta: float = 0.1,
        stable_model_update_weight: float = 0.999,
        plastic_model_update_weight: float = 0.999,
        stable_model_update_probability: float = 0.7,
        plastic_model_update_probability: float = 0.9,
        components: Sequence[Component] = (),
        **kwargs: Unpack[ReplaySettings],
    ) -> None:
        decays = (stable_model_update_weight, plastic_model_update_weight)
        chances = (stable_model_update_probability, plastic_model_update_probability)
        own = [MemoryCrossEntropy(alpha), CLSConsistency(beta, model, *decays, *chances)]
        super().__init__(model, loss_fn, optimizer, [*own, *components], memory_size, **kwargs)


class SuperExperienceReplayModelUpdater(ModelUpdater):
    """Super-ER: DER++ (``der_alpha`` logit MSE, ``der_beta`` memory CE), CLS-ER's consistency
    (``cls_alpha``), shrink-and-perturb at each update start, and POD (``pod_alpha``).

    Every term reads the one forward pass of new plus memory samples that the Learner does per
    step (Renate drew three memory batches and ran three memory forwards per step); only the two
    CLS teachers run forwards of their own, without gradients. Terms whose weight is 0 are left
    out, so they cost nothing.

    Args:
        der_alpha, der_beta: DER++'s weights [1, 1].
        sp_shrink_factor, sp_sigma: shrink-and-perturb [0.95, 0.001].
        cls_alpha: weight of the CLS consistency [0.1].
        cls_stable_model_update_weight, cls_plastic_model_update_weight: [0.999, 0.999].
        cls_stable_model_update_probability, cls_plastic_model_update_probability: [0.7, 0.9].
        pod_alpha: weight of POD [1]; ``pod_distillation_type`` ["spatial"], ``pod_normalize`` [True].
        feature_layers: layers POD distils; default the model's ``feature_layers`` attribute.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        der_alpha: float = 1.0,
        der_beta: float = 1.0,
        sp_shrink_factor: float = 0.95,
        sp_sigma: float = 0.001,
        cls_alpha: float = 0.1,
        cls_stable_model_update_weight: float = 0.999,
        cls_plastic_model_update_weight: float = 0.999,
        cls_stable_model_update_probability: float = 0.7,
        cls_plastic_model_update_probability: float = 0.9,
        pod_alpha: float = 1.0,
        pod_distillation_type: str = "spatial",
        pod_normalize: bool = True,
        feature_layers: Sequence[str] | None = None,
        components: Sequence[Component] = (),
        **kwargs: Unpack[ReplaySettings],
    ) -> None:
        own: list[Component] = []
        if der_alpha > 0:
            own.append(LogitMSE(der_alpha))
        if der_beta > 0:
            own.append(MemoryCrossEntropy(der_beta))
        if cls_alpha > 0:
            decays = (cls_stable_model_update_weight, cls_plastic_model_update_weight)
            chances = (cls_stable_model_update_probability, cls_plastic_model_update_probability)
            own.append(CLSConsistency(cls_alpha, model, *decays, *chances))
        if sp_shrink_factor != 1.0 or sp_sigma != 0.0:
            own.append(ShrinkAndPerturb(sp_shrink_factor, sp_sigma))
        layers: tuple[str, ...] = ()
        if pod_alpha > 0:
            layers = resolve_feature_layers(model, feature_layers)
            own.append(PooledOutputDistillation(pod_alpha, layers, pod_distillation_type, pod_normalize))
        super().__init__(model, loss_fn, optimizer, [*own, *components], memory_size, **kwargs)
        self.hyperparameters["feature_layers"] = list(layers)  # as resolved from the model


class OfflineExperienceReplayModelUpdater(ModelUpdater):
    """Offline-ER: the memory is filled only when an update ends, with the whole chunk; each step's
    loss is ``a * L_new + (1 - a) * L_memory``.

    Args:
        loss_weight_new_data: ``a`` in [0, 1]; ``None`` [default] sets it per update to
            ``N_current / N_seen``, the share of the new chunk in all data seen so far (including
            it). While the memory is empty (the first update) the loss is ``L_new``.
        memory_size: replay memory capacity, filled by the memory policy (reservoir by default).
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but
            ``loss_weight``, ``loss_normalization`` and ``ema_memory_update_gamma``, which ``a``
            replaces or which have no stored metadata to act on, and ``memory_insertion``.
    """

    refused_arguments = {
        **refusing(
            ("loss_weight", "loss_normalization", "ema_memory_update_gamma", "components"),
            "does not take {name!r}; the loss is a * L_new + (1 - a) * L_memory with a = loss_weight_new_data",
        ),
        **refusing(
            ("memory_insertion",),
            "fills its memory with the whole chunk when an update ends; drop the argument {name!r}",
        ),
    }

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        loss_weight_new_data: float | None = None,
        **kwargs: Unpack[OfflineSettings],
    ) -> None:
        if loss_weight_new_data is not None and not 0.0 <= float(loss_weight_new_data) <= 1.0:
            raise ValueError(f"loss_weight_new_data must lie in [0, 1] or be None, got {loss_weight_new_data}")
        self._memory_loss = MemoryCrossEntropy(1.0)
        own = [self._memory_loss]
        super().__init__(model, loss_fn, optimizer, own, memory_size, memory_insertion="update_end", **kwargs)
        self.loss_weight_new_data = None if loss_weight_new_data is None else float(loss_weight_new_data)

    def new_data_weight(self, num_new: int) -> float:
        """``a`` for an update on ``num_new`` samples, given everything the memory has been offered."""
        if self.loss_weight_new_data is not None:
            return self.loss_weight_new_data
        return num_new / (self.memory.seen + num_new)

    def training_data(self, train_dataset: Dataset, task_id: int) -> Dataset:
        # With a + (1 - a) = 1 in the normalised total, the step loss is exactly a*L_new + (1-a)*L_mem;
        # with an empty memory the memory term is absent and the loss is L_new.
        a = self.new_data_weight(chunk_length(train_dataset, "Offline-ER's loss weight")) if len(self.memory) else 1.0
        self.learner.loss_weight = a
        self._memory_loss.weight = 1.0 - a
        return train_dataset

    def fill_memory(self, train_dataset: Dataset, task_id: int) -> None:
        """The whole chunk is offered to the memory (its policy decides what stays), no metadata."""
        add_chunk(self.memory, train_dataset, task_id)
