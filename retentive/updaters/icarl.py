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
from typing import Any

from torch import nn

from retentive.components.base import Component
from retentive.components.distillation import ICaRL
from retentive.updaters.base import ModelUpdater


def resolve_feature_layer(model: nn.Module, feature_layer: str | None) -> str:
    """``feature_layer`` if given, else the last of the model's ``feature_layers``; it must exist."""
    if feature_layer is None:
        layers = getattr(model, "feature_layers", None)
        if not layers:
            raise ValueError(
                f"iCaRL needs feature_layer, the submodule of {type(model).__name__} whose output is the feature "
                "vector (the penultimate layer); pass feature_layer=... or give the model a feature_layers attribute"
            )
        feature_layer = layers[-1]
    names = dict(model.named_modules())
    if feature_layer not in names:
        raise ValueError(f"feature_layer {feature_layer!r} is not a submodule of {type(model).__name__}; it has {[n for n in names if n]}")
    return feature_layer


class ICaRLModelUpdater(ModelUpdater):
    """iCaRL: herding exemplars, distillation, and the nearest-mean-of-exemplars classifier.

    Args:
        memory_size: the exemplar budget (>= the number of classes seen).
        feature_layer: the layer giving the feature vector [the model's last ``feature_layers``].
        components: further components without memory metadata [none].
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but
            ``loss_weight`` (iCaRL's BCE replaces the task loss) and ``memory_policy``.
    """

    def __init__(
        self,
        model: Any,
        loss_fn: Any,
        optimizer: Any,
        memory_size: int,
        feature_layer: str | None = None,
        components: Sequence[Component] = (),
        **kwargs: Any,
    ) -> None:
        for key in ("loss_weight", "memory_policy", "memory_insertion"):
            if key in kwargs:
                raise TypeError(f"ICaRLModelUpdater keeps a herded memory and iCaRL's loss; drop the argument {key!r}")
        layer = resolve_feature_layer(model, feature_layer)
        own = ICaRL(memory_size, layer)
        super().__init__(model, loss_fn, optimizer, components=[own, *components], memory_size=memory_size,
                         loss_weight=0.0, **kwargs)
        self.learner.update_memory_every_step = False
        self.hyperparameters["feature_layer"] = layer  # as resolved from the model
