"""Restore a model's weights from a state folder, for inference."""

from __future__ import annotations

import os

from torch import nn

from retentive.errors import StateError
from retentive.state import load_state


def load_model(model: nn.Module, folder: str | os.PathLike[str]) -> nn.Module:
    """Load the weights saved in ``folder`` into ``model`` (verified, code-free) and return it."""
    state = load_state(folder)
    try:
        model.load_state_dict(state.model)
    except RuntimeError as error:
        raise StateError(f"the model in {str(folder)!r} does not fit the model passed in: {error}") from error
    return model
