"""Renate's ``updater`` names (``run_training_job(updater="ER")``) -> retentive's classes, through
the method registry (each method's spec carries its Renate name), and the Renate optimizer settings
a config space may hold instead of an ``optimizer_fn``."""

from __future__ import annotations

from typing import Any

from retentive.methods.registry import find, renate_names

#: Renate's optimizer settings (used when the config module has no ``optimizer_fn``) and defaults
OPTIMIZER_KEYS: dict[str, Any] = {"optimizer": "Adam", "learning_rate": 3e-4, "momentum": 0.0, "weight_decay": 0.0}
OPTIMIZERS = ("Adam", "SGD")
#: Renate's config-space names that are spelled differently as updater arguments
RENAMED = {"early_stopping": "early_stopping_enabled"}


def updater_class(name: str) -> type:
    """The retentive updater class for a Renate ``updater`` name (or any name a registered method
    answers to: its registry name, its class name)."""
    from retentive.updaters.base import ModelUpdater

    spec = find(name)
    cls = spec.updater_class() if spec is not None else None
    if not isinstance(cls, type) or not issubclass(cls, ModelUpdater) or cls is ModelUpdater:
        raise ValueError(
            f"unknown updater {name!r}; expected a Renate name ({', '.join(renate_names())}) or a retentive "
            "updater class name (e.g. DarkExperienceReplayModelUpdater)"
        )
    return cls


def make_optimizer(values: dict[str, Any]) -> Any:
    """``partial(torch.optim.<optimizer>, lr=..., ...)`` from Renate's optimizer settings."""
    from functools import partial

    import torch

    settings = {key: values.get(key, default) for key, default in OPTIMIZER_KEYS.items()}
    if settings["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {settings['optimizer']!r}")
    lr, weight_decay = float(settings["learning_rate"]), float(settings["weight_decay"])
    if settings["optimizer"] == "SGD":
        return partial(torch.optim.SGD, lr=lr, momentum=float(settings["momentum"]), weight_decay=weight_decay)
    return partial(torch.optim.Adam, lr=lr, weight_decay=weight_decay)
