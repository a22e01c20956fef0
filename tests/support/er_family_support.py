"""Builders shared by the ER-family tests and the subprocess that re-reads their state folders."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

import retentive as R
from retentive.models import MLP

QUIET: dict[str, Any] = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)

#: name -> (updater class, its arguments) for the small end-to-end runs.
UPDATERS: dict[str, tuple[type, dict[str, Any]]] = {
    "pod_er": (R.PooledOutputDistillationExperienceReplayModelUpdater, dict(memory_size=100, batch_size=20, alpha=1.0)),
    "cls_er": (R.CLSExperienceReplayModelUpdater, dict(memory_size=100, batch_size=20)),
    "super_er": (
        R.SuperExperienceReplayModelUpdater,
        dict(memory_size=100, batch_size=20, ema_memory_update_gamma=0.9),
    ),
    "offline_er": (R.OfflineExperienceReplayModelUpdater, dict(memory_size=100, batch_size=20)),
    "gdumb": (R.GDumbModelUpdater, dict(memory_size=100, batch_size=10, max_epochs=8)),
    "joint": (R.JointModelUpdater, dict(batch_size=10)),
}


def build(name: str, **kwargs: Any) -> R.ModelUpdater:
    """A fresh MLP and the named updater (SGD lr 0.1, seed 0) with ``kwargs`` on top."""
    cls, arguments = UPDATERS[name]
    torch.manual_seed(0)
    optimizer = partial(torch.optim.SGD, lr=0.1)
    return cls(MLP(), torch.nn.CrossEntropyLoss(), optimizer, seed=0, **{**QUIET, **arguments, **kwargs})


def snapshot(updater: R.ModelUpdater) -> dict[str, Any]:
    """Everything a state folder must bring back: weights, component state, memory, counters."""
    return {
        "model": {k: v.detach().cpu().clone() for k, v in updater.model.state_dict().items()},
        "components": [
            {k: v.detach().cpu().clone() for k, v in c.state_dict().items()} for c in updater.learner.components
        ],
        "total_steps": updater.learner.total_steps,
        "memory": {k: v[: len(updater.memory)].detach().cpu().clone() for k, v in updater.memory.storage.items()},
        "memory_counts": [len(updater.memory), updater.memory.seen, updater.memory.capacity],
        "updates_done": updater.updates_done,
    }


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two snapshots differ (exact equality of every tensor and number)."""
    if isinstance(expected, dict):
        if set(expected) != set(actual):
            return [f"{path}: keys {sorted(expected)} != {sorted(actual)}"]
        return [d for k in expected for d in differences(expected[k], actual[k], f"{path}.{k}")]
    if isinstance(expected, (list, tuple)):
        if len(expected) != len(actual):
            return [f"{path}: length {len(expected)} != {len(actual)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{path}[{i}]")]
    if torch.is_tensor(expected):
        same = expected.shape == actual.shape and expected.dtype == actual.dtype and torch.equal(expected, actual)
        return [] if same else [f"{path}: tensors differ"]
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]


def start(learner: R.Learner) -> torch.optim.Optimizer:
    """Begin an update by hand, as ``Trainer.fit`` would: hooks first, then the optimizer."""
    learner.on_fit_start()
    return learner.configure_optimizers()


def manual_step(learner: R.Learner, optimizer: torch.optim.Optimizer, batch: tuple) -> torch.Tensor:
    """One training step as the Learner's ``training_step`` runs it: loss, backward, optimizer
    step, then the after-step work (memory insert, component hooks)."""
    optimizer.zero_grad()
    loss, ctx = learner.step_loss(batch)
    loss.backward()
    optimizer.step()
    learner.after_step(ctx)
    return loss.detach()
