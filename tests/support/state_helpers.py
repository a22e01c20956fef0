"""Helpers for the reliability tests: tiny real-MNIST updaters, folder digests, state snapshots."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from helpers import QUIET, sgd

from retentive import DarkExperienceReplayModelUpdater
from retentive.models import MLP
from retentive.state import MANIFEST, PAYLOADS


def der(output: Path | None = None, input_state: Path | None = None, memory_size: int = 50, **kwargs: Any):
    """DER++ on the MNIST MLP with a small memory; the model is initialised the same way each time."""
    torch.manual_seed(0)
    settings: dict[str, Any] = dict(memory_size=memory_size, batch_size=32, alpha=0.5, beta=0.5, seed=0, **QUIET)
    settings.update(kwargs)
    model = settings.pop("model", None) or MLP()
    optimizer = settings.pop("optimizer", None) or sgd(0.03)
    return DarkExperienceReplayModelUpdater(
        model,
        torch.nn.CrossEntropyLoss(),
        optimizer,
        input_state_folder=input_state,
        output_state_folder=output,
        **settings,
    )


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (folders as ``dir``)."""
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
    }


def snapshot(updater) -> dict[str, Any]:
    """The updater's model, memory and counters, detached, to compare after a failed call."""
    return {
        "model": {k: v.detach().clone() for k, v in updater.model.state_dict().items()},
        "memory": updater.memory.state_dict(),
        "counters": (updater.updates_done, dict(updater.tasks_seen), updater.learner.total_steps),
    }


def same_snapshot(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def same(x: Any, y: Any) -> bool:
        if torch.is_tensor(x) or torch.is_tensor(y):
            return torch.is_tensor(x) and torch.is_tensor(y) and torch.equal(x, y)
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
        return x == y

    return same(a, b)


def rehash(folder: Path) -> None:
    """Make the manifest vouch for the files as they are now (what an attacker with write access does)."""
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    for name in PAYLOADS:
        data = (folder / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    path.write_text(json.dumps(manifest))


def edit_manifest(folder: Path, **changes: Any) -> None:
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def hidden_entries(parent: Path) -> list[str]:
    """The ``.retentive-*`` debris in ``parent`` (staging folders, lock files, resume checkpoints)."""
    if not Path(parent).is_dir():
        return []
    return sorted(p.name for p in Path(parent).iterdir() if p.name.startswith(".retentive-"))


def memory_bytes_hold(folder: Path, ids: list[int]) -> list[bool]:
    """For each sample id, whether its int64 bytes occur anywhere in ``folder``'s memory.pt (a
    deleted sample's id must be absent from the bytes, not merely hidden)."""
    raw = (folder / "memory.pt").read_bytes()
    return [np.int64(i).tobytes() in raw for i in ids]
