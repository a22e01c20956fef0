"""Prompt-based updaters for vision transformers (Renate's names and defaults): L2P, L2P with
Offline-ER replay, and S-Prompts (``SPeftModelUpdater``).

The backbone stays frozen; what learns lives in the model (prompts, keys, heads; S-Prompts'
k-means centers are buffers), so all of it is in ``model.pt`` of the state folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn
from torch.utils.data import Dataset

from retentive.components.base import Component
from retentive.components.prompts import PromptKeyQueryLoss, TaskPrototypes
from retentive.data.streaming import chunk_length
from retentive.errors import DataError
from retentive.learner import Learner, OptimizerFactory
from retentive.models.l2p import LearningToPromptTransformer
from retentive.models.protocol import adapt_model, clusters_per_task
from retentive.models.sprompts import SPromptTransformer
from retentive.updaters.base import ModelUpdater
from retentive.updaters.replay import OfflineExperienceReplayModelUpdater
from retentive.updaters.settings import LossFunction, PromptReplaySettings, PromptSettings
from retentive.updaters.signature import refusing

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack

RENATE_PROMPT_SIM_LOSS_WEIGHT = 0.5
_MEMORY = ("memory_size", "components", "batch_memory_frac", "memory_batch_size", "memory_policy")
#: what L2P and S-Prompts set themselves: no memory, so no replayed share of the batch
_NO_MEMORY: dict[str, Any] = {"memory_size": 0, "batch_memory_frac": 0.0}


def _check_model(updater: str, model: Any, expected: type) -> None:
    if not isinstance(model, expected):
        raise TypeError(f"{updater} trains a retentive.models.{expected.__name__}, got {type(model).__name__}")


def _check_weight(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"prompt_sim_loss_weight must be a number >= 0, got {value!r}")
    return float(value)


def _check_learner_kwargs(updater: str, learner_kwargs: Any) -> None:
    # Renate accepts learner_kwargs here and silently discards it; refusing is the honest answer
    if learner_kwargs is not None and not isinstance(learner_kwargs, dict):
        raise TypeError(
            f"{updater}'s learner_kwargs must be None, got {type(learner_kwargs).__name__}; pass the other "
            "arguments by name (batch_size=..., seed=...)"
        )
    if learner_kwargs:
        raise TypeError(
            f"{updater} does not take learner_kwargs (Renate ignored them); pass the arguments "
            f"{sorted(learner_kwargs)} to the updater itself"
        )


class _PromptTuning(ModelUpdater):
    """What L2P and S-Prompts share: the model class they train (``model_class``), no memory, and
    Renate's ``learner_kwargs`` refused; the method's loss terms come from :meth:`prompt_components`.

    Args:
        learner_kwargs: Renate's argument, which Renate ignores; only ``None`` or ``{}`` is accepted.
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but the memory ones.
    """

    model_class: ClassVar[type[nn.Module]]
    refused_arguments = refusing(_MEMORY, "keeps no memory; drop the argument {name!r}")

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        learner_kwargs: dict[str, Any] | None = None,
        **kwargs: Unpack[PromptSettings],
    ) -> None:
        name = type(self).__name__
        _check_model(name, model, self.model_class)
        _check_learner_kwargs(name, learner_kwargs)
        super().__init__(model, loss_fn, optimizer, self.prompt_components(), **_NO_MEMORY, **kwargs)

    def prompt_components(self) -> list[Component]:
        """The method's loss terms (built in the constructor, after the model is checked)."""
        raise NotImplementedError


class LearningToPromptModelUpdater(_PromptTuning):
    """L2P (Wang et al., CVPR 2022): ``CE + prompt_sim_loss_weight * sum_i (1 - cos(q, k_i))``,
    no memory; only the prompt pool, its keys and the head of a
    :class:`~retentive.models.LearningToPromptTransformer` train.

    Args:
        prompt_sim_loss_weight: ``lambda`` of the key-query surrogate [0.5].
        learner_kwargs, **kwargs: as in S-Prompts (Renate's ``learner_kwargs`` is refused unless empty).
    """

    model_class = LearningToPromptTransformer

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        prompt_sim_loss_weight: float = RENATE_PROMPT_SIM_LOSS_WEIGHT,
        learner_kwargs: dict[str, Any] | None = None,
        **kwargs: Unpack[PromptSettings],
    ) -> None:
        self._prompt_sim_loss_weight = prompt_sim_loss_weight
        super().__init__(model, loss_fn, optimizer, learner_kwargs, **kwargs)

    def prompt_components(self) -> list[Component]:
        self.key_query = PromptKeyQueryLoss(_check_weight(self._prompt_sim_loss_weight))
        return [self.key_query]


class LearningToPromptReplayModelUpdater(OfflineExperienceReplayModelUpdater):
    """L2P with Offline-ER replay (Renate's): each step's loss is
    ``a * L_new + (1 - a) * L_memory + prompt_sim_loss_weight * surrogate``, the memory filled
    with the whole chunk when an update ends.

    New and replayed samples share one forward pass; with ``per_batch_prompt`` they therefore
    share the batch's majority prompts (Renate ran two forwards, one prompt set each).

    Args:
        memory_size, batch_memory_frac, loss_weight_new_data: as in
            :class:`~retentive.updaters.OfflineExperienceReplayModelUpdater`.
        prompt_sim_loss_weight: ``lambda`` of the key-query surrogate [0.5].
        **kwargs: every :class:`~retentive.updaters.OfflineExperienceReplayModelUpdater` argument.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        batch_memory_frac: float = 0.5,
        loss_weight_new_data: float | None = None,
        prompt_sim_loss_weight: float = RENATE_PROMPT_SIM_LOSS_WEIGHT,
        **kwargs: Unpack[PromptReplaySettings],
    ) -> None:
        _check_model(type(self).__name__, model, LearningToPromptTransformer)
        self.key_query = PromptKeyQueryLoss(_check_weight(prompt_sim_loss_weight))
        weights: dict[str, Any] = {"batch_memory_frac": batch_memory_frac}
        super().__init__(model, loss_fn, optimizer, memory_size, loss_weight_new_data, **weights, **kwargs)

    def build_learner(self, **settings: Any) -> Learner:
        settings["components"] = [*settings["components"], self.key_query]
        return super().build_learner(**settings)


class SPeftModelUpdater(_PromptTuning):
    """S-Prompts (Wang et al., NeurIPS 2022) on an :class:`~retentive.models.SPromptTransformer`:
    each update adds and trains one prompt (and head, if per task) with the task loss, and
    clusters the chunk's backbone features into that task's k-means centers, which pick the
    prompt at inference. As in Renate, a task is an update: each ``update()`` grows a prompt,
    whatever its ``task_id``; ``clusters_per_task`` is the model's argument (Renate's place).
    Its arguments are those of every prompt method (``learner_kwargs``, refused unless empty).
    """

    model_class = SPromptTransformer

    def prompt_components(self) -> list[Component]:
        return [TaskPrototypes()]

    def adapt_model(self, tasks: Sequence[int | str]) -> None:
        # one prompt per update; restoring, the model grows from its own state dict instead
        adapt_model(self.model, self.updates_done)

    def check_data(self, train_dataset: Dataset) -> None:
        clusters = clusters_per_task(self.model)
        samples = chunk_length(train_dataset, "S-Prompts' clustering")
        if samples < clusters:
            raise DataError(
                f"S-Prompts clusters each chunk into clusters_per_task={clusters} centers, but the chunk holds "
                f"only {samples} samples"
            )
