"""Re-initialise a model in place, for the baselines that retrain from scratch (GDumb, Joint)."""

from __future__ import annotations

import torch
from torch import nn


def _own_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def check_reinitializable(model: nn.Module) -> None:
    """Refuse a model with parameters or buffers owned by a module lacking ``reset_parameters()``.

    Renate only logged a warning and went on with a half re-initialised model; here the
    updater refuses it up front, naming the modules to fix.
    """
    missing = [
        name or type(model).__name__
        for name, module in model.named_modules()
        if _own_tensors(module) and not callable(getattr(module, "reset_parameters", None))
    ]
    if missing:
        raise ValueError(
            f"cannot re-initialise the model: modules {missing} own parameters or buffers but have no "
            "reset_parameters() method; give them one (as torch.nn layers have)"
        )


@torch.no_grad()
def reinitialize_(model: nn.Module) -> nn.Module:
    """Call ``reset_parameters()`` on every module that owns tensors (draws from the global RNG)."""
    check_reinitializable(model)
    for module in model.modules():
        if _own_tensors(module):
            module.reset_parameters()  # type: ignore[operator]
    return model
