"""Restore a model's weights from a state folder, for inference."""

from __future__ import annotations

import copy
import os

from torch import nn

from retentive.errors import StateError
from retentive.state.format import load_state


def load_model(model: nn.Module, folder: str | os.PathLike[str]) -> nn.Module:
    """Load the weights saved in ``folder`` into ``model`` (verified, code-free) and return it.

    If they do not fit, ``model`` is left as it was and :class:`StateError` is raised.
    """
    state = load_state(folder)
    adapt = getattr(model, "adapt", None)
    if callable(adapt):  # a growing model rebuilds its structure (e.g. progressive columns) first
        for task in state.learner.get("updater", {}).get("task_order", []):
            adapt(task)
    backup = copy.deepcopy(model.state_dict())
    try:
        model.load_state_dict(state.model)
    except Exception as error:  # load_state_dict copies the tensors that fit before it complains
        model.load_state_dict(backup)
        raise StateError(f"the model in {str(folder)!r} does not fit the model passed in: {error}") from error
    return model
