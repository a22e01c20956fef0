"""What retentive asks of a model: any ``nn.Module`` returning logits, plus optional capabilities.

Nothing is inherited. A model opts into a capability by having the member the protocol names,
and every part of retentive reads it through the one helper below, so this module is the only
place that probes a model:

==========================  ======================================  ==============================
capability                  the model has                           read with
==========================  ======================================  ==============================
task routing                ``takes_task_ids = True``;              :func:`takes_task_ids`,
                            ``forward(x, task_ids)``                :func:`forward_routed`
growth                      ``adapt(task_id)``                      :func:`can_adapt`,
                                                                    :func:`adapt_model`
feature layer               ``feature_layer``: the submodule whose  :func:`feature_layer`
                            output is the feature vector            (:class:`~retentive.models.taps.FeatureTap`)
hidden layers (POD)         ``feature_layers``: names, deepest last :func:`hidden_layers`
own re-initialisation       ``reset_parameters()``                  :func:`reset_model`
prompt query loss (L2P)     ``key_query_loss``: the step's term     :func:`prompt_query_loss`
task prototypes (S-Prompts) ``clusters_per_task``                   :func:`clusters_per_task`
==========================  ======================================  ==============================

The feature layer has one rule, used by iCaRL, update-end selection and shift detection alike:
the output of the layer the caller names, else of the layer the model declares
(``feature_layer``), else the *input of the last* ``nn.Linear`` *the forward pass calls* (the
classifier head of a plain MLP or CNN), captured with forward hooks.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class ContinualModel(Protocol):
    """Any ``nn.Module`` whose forward returns ``(batch, classes)`` logits."""

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor: ...

    def parameters(self, recurse: bool = True) -> Any: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any: ...


@runtime_checkable
class TaskRoutedModel(Protocol):
    """A model whose forward takes the samples' task ids: ``model(x, task_ids)``."""

    takes_task_ids: bool

    def __call__(self, x: Any, task_ids: Tensor | None) -> Tensor: ...


@runtime_checkable
class GrowingModel(Protocol):
    """A model that grows per task (a column, a mask, a prompt) before it trains on it.

    ``adapt`` is idempotent per task, and a fresh model rebuilds its structure from the task order
    before saved weights load into it.
    """

    def adapt(self, task_id: Any) -> None: ...


@runtime_checkable
class FeatureLayerModel(Protocol):
    """A model that names the submodule whose output is its feature vector (``None``: the default)."""

    feature_layer: str | None


# ------------------------------------------------------------------------------------ routing
def takes_task_ids(model: nn.Module) -> bool:
    """Whether ``model``'s forward expects ``(x, task_ids)``."""
    return bool(getattr(model, "takes_task_ids", False))


def forward_routed(model: nn.Module, x: Any, task_ids: Tensor | None) -> Tensor:
    """``model(x, task_ids)`` for a task-routed model, ``model(x)`` otherwise."""
    if takes_task_ids(model):
        return model(x, task_ids)
    return model(x)


# ------------------------------------------------------------------------------------ growth
def can_adapt(model: nn.Module) -> bool:
    """Whether ``model`` grows per task (has a callable ``adapt``)."""
    return callable(getattr(model, "adapt", None))


def adapt_model(model: nn.Module, task_id: Any, **options: Any) -> None:
    """Let a growing model grow for ``task_id`` (``options`` go to its ``adapt``); others are left alone."""
    if can_adapt(model):
        model.adapt(task_id, **options)  # type: ignore[operator]


# ------------------------------------------------------------------------------------ features
def feature_layer(model: nn.Module, layer: str | None = None) -> str | None:
    """The submodule whose output is the feature vector: ``layer``, else the model's declared one.

    ``None`` means the default rule: the input of the last ``nn.Linear`` the forward pass calls.
    A name that is not a submodule of ``model`` is a ``ValueError`` naming the submodules.
    """
    name = layer if layer is not None else getattr(model, "feature_layer", None)
    if name is None:
        return None
    modules = dict(model.named_modules())
    if not isinstance(name, str) or not name or name not in modules:
        raise ValueError(
            f"feature_layer {name!r} is not a submodule of {type(model).__name__}; it has "
            f"{[n for n in modules if n][:20]}"
        )
    return name


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """``model``'s ``nn.Linear`` submodules by name (the default feature is the last one's input)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}


def has_hidden_layer(model: nn.Module, layer: str | None = None) -> bool:
    """Whether the feature vector is computed by the model rather than being its raw input.

    True when a feature layer is named or declared, or when some submodule with parameters is
    registered before the last ``nn.Linear`` (a hidden layer feeds the head). A single linear
    layer, or ``Flatten`` then ``Linear``, has none: its "features" would be its inputs.
    """
    if feature_layer(model, layer) is not None:
        return True
    seen_parameters = False
    last_linear_seen_after = False
    for _, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_linear_seen_after = seen_parameters
        if next(module.parameters(recurse=False), None) is not None:
            seen_parameters = True
    return last_linear_seen_after


def hidden_layers(model: nn.Module) -> tuple[str, ...] | None:
    """The hidden layers a model names for feature distillation (``feature_layers``), or ``None``."""
    layers = getattr(model, "feature_layers", None)
    if layers is None or isinstance(layers, str):
        return None
    return tuple(layers)


# ------------------------------------------------------------------------------------ the rest
def reset_model(model: nn.Module) -> bool:
    """Call the model's own ``reset_parameters()`` if it has one; ``False`` if it has none."""
    reset = getattr(model, "reset_parameters", None)
    if not callable(reset):
        return False
    with torch.no_grad():
        reset()
    return True


def has_own_reset(model: nn.Module) -> bool:
    """Whether ``model`` re-initialises itself (``reset_parameters()``) rather than layer by layer."""
    return callable(getattr(model, "reset_parameters", None))


def prompt_query_loss(model: nn.Module) -> Tensor | None:
    """The key-query term the model computed in its latest forward (L2P), or ``None``."""
    value = getattr(model, "key_query_loss", None)
    return value if torch.is_tensor(value) else None


def clusters_per_task(model: nn.Module) -> int:
    """How many prototype centers per task the model keeps (S-Prompts); a ``TypeError`` if it keeps none."""
    value = getattr(model, "clusters_per_task", None)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{type(model).__name__} has no clusters_per_task (an int); S-Prompts needs one")
    return value
