"""iCaRL (Rebuffi et al., CVPR 2017) under Renate's name: ``ICaRLModelUpdater``.

The loss is iCaRL's distillation BCE on new and exemplar samples (the task loss gets weight 0);
the memory holds ``memory_size // classes`` herded exemplars per class, rebuilt at the end of each
update; the class means of the exemplars live in the state folder. Predicting with the nearest
mean of exemplars::

    from retentive.components.distillation import icarl_classifier
    nme = icarl_classifier(MLP(), "state/chunk_4")      # an nn.Module returning class scores
    predictions = nme(x).argmax(-1)

The updated model itself (``update()``'s return value) predicts with its trained classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.utils.data import Dataset

from retentive.components.base import Component
from retentive.components.distillation import ICaRL
from retentive.learner import OptimizerFactory
from retentive.models.protocol import feature_layer as resolve_layer
from retentive.models.protocol import has_hidden_layer
from retentive.updaters.base import ModelUpdater
from retentive.updaters.settings import ICaRLSettings, LossFunction
from retentive.updaters.signature import refusing

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack


def resolve_feature_layer(model: nn.Module, feature_layer: str | None) -> str | None:
    """``feature_layer`` if given, else the model's declared one; ``None``: the input of its last ``nn.Linear``.

    The one rule of :func:`retentive.models.protocol.feature_layer`. A model whose last
    ``nn.Linear`` has no hidden layer before it (``Flatten`` then ``Linear``) has no feature vector
    but its inputs, and is refused.
    """
    layer = resolve_layer(model, feature_layer)  # an unknown name is a ValueError naming the submodules
    if not has_hidden_layer(model, layer):
        raise ValueError(
            f"iCaRL needs feature_layer, the submodule of {type(model).__name__} whose output is the feature vector "
            "(the penultimate layer): by default the input of the last nn.Linear, but no hidden layer precedes it "
            "here; pass feature_layer=... or declare model.feature_layer"
        )
    return layer


class ICaRLModelUpdater(ModelUpdater):
    """iCaRL: herding exemplars, distillation, and the nearest-mean-of-exemplars classifier.

    Args:
        memory_size: the exemplar budget (>= the number of classes seen).
        feature_layer: the layer whose output is the feature vector [the model's declared
            ``feature_layer``, else the input of its last ``nn.Linear``: a plain MLP or CNN works
            as it is].
        components: further components without memory metadata [none].
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but
            ``loss_weight`` (iCaRL's BCE replaces the task loss) and ``memory_policy``.
    """

    refused_arguments = refusing(
        ("loss_weight", "memory_policy", "memory_insertion"),
        "keeps a herded memory and iCaRL's loss; drop the argument {name!r}",
    )

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        feature_layer: str | None = None,
        components: Sequence[Component] = (),
        **kwargs: Unpack[ICaRLSettings],
    ) -> None:
        layer = resolve_feature_layer(model, feature_layer)
        own = ICaRL(memory_size, layer)
        fixed: dict[str, Any] = {"loss_weight": 0.0, "memory_insertion": "update_end"}
        super().__init__(model, loss_fn, optimizer, [own, *components], memory_size, **fixed, **kwargs)
        self.hyperparameters["feature_layer"] = layer  # as resolved from the model

    def fill_memory(self, train_dataset: Dataset, task_id: int) -> None:
        """Nothing to insert: iCaRL's component herds the exemplars when the update ends."""
