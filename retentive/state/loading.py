"""Restore a model's weights from a state folder, for inference."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

from torch import nn

from retentive.errors import StateError
from retentive.state.format import State, load_state


def _mismatch(model: nn.Module, saved: dict) -> str:
    """What does not fit, briefly: missing and unexpected names, and shapes that differ (first three each)."""
    own = model.state_dict()
    missing = [name for name in own if name not in saved]
    unexpected = [name for name in saved if name not in own]
    shapes = [
        f"{name} {tuple(saved[name].shape)} saved, {tuple(own[name].shape)} here"
        for name in own
        if name in saved and tuple(saved[name].shape) != tuple(own[name].shape)
    ]
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("other shapes", shapes)):
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            parts.append(f"{label}: {', '.join(names[:3])}{more}")
    return "; ".join(parts) or "the tensors did not load"


def _read(folder: str | os.PathLike[str]) -> State:
    """The verified state at ``folder``, a local folder or a URL (fetched into a temporary folder)."""
    from retentive.state.remote import fetch_state, is_url

    if not is_url(folder):
        from retentive.state.remote import local_path

        return load_state(local_path(folder))
    with tempfile.TemporaryDirectory(prefix="retentive-state-") as scratch:
        local = fetch_state(os.fspath(folder), Path(scratch) / "state")
        try:
            return load_state(local)
        except StateError as error:
            raise StateError(str(error).replace(str(local), os.fspath(folder))) from error


def load_model(model: nn.Module, folder: str | os.PathLike[str], eval_mode: bool = True) -> nn.Module:
    """Load the weights saved in ``folder`` into ``model`` (verified, code-free) and return it.

    ``folder`` is a state folder or a URL (``s3://...``, any fsspec filesystem) of one.

    The model is returned in eval mode (``model.eval()``: dropout off, batch-norm statistics
    frozen), ready for inference; pass ``eval_mode=False`` to keep its current mode, e.g. to train
    it further outside an updater. If the weights do not fit, ``model`` is left as it was (weights
    and mode) and :class:`StateError` names what differs.
    """
    state = _read(folder)
    from retentive.models.protocol import adapt_model

    try:  # a growing model rebuilds its structure (e.g. progressive columns) first
        for task in state.learner.get("updater", {}).get("task_order", []):
            adapt_model(model, task)
    except Exception as error:  # e.g. more columns than the model can build
        raise StateError(f"the model cannot grow to the state in {str(folder)!r}: {error}") from error
    backup = copy.deepcopy(model.state_dict())
    try:
        model.load_state_dict(state.model)
    except Exception as error:  # load_state_dict copies the tensors that fit before it complains
        model.load_state_dict(backup)
        raise StateError(
            f"the model in {str(folder)!r} does not fit the model passed in ({type(model).__name__}): "
            f"{_mismatch(model, state.model)}"
        ) from error
    if eval_mode:
        model.eval()
    return model
