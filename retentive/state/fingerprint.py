"""Which update a resume checkpoint belongs to, and how two updates differ.

A checkpoint records the fingerprint of the update that wrote it (updater, hyperparameters, input
state, task, seed, a cheap hash of the data); a later update resumes it only with the same one,
and a refusal names only what differs (:func:`differences`). Split from :mod:`retentive.state.resume`,
which re-exports :func:`dataset_fingerprint` and :func:`update_fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset

from retentive.data import nested
from retentive.data.streaming import is_stream


def _tensor_bytes(value: Any) -> bytes:
    tensor = torch.as_tensor(value).detach().cpu().reshape(-1).contiguous()
    return tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


def _hash_sample(digest: Any, sample: Any) -> None:
    for part in sample:  # nested inputs: every leaf, in flatten's order, with its path
        for path, leaf in nested.flatten(part).items() if nested.is_nested(part) else [("", part)]:
            digest.update(path.encode() + _tensor_bytes(leaf))


def stream_fingerprint(dataset: IterableDataset) -> dict[str, Any]:
    """A stream's fingerprint: its declared length (``None`` if none), and a hash of its first sample
    and of its ``source`` description (the shard URLs of :mod:`retentive.data.stream_formats`) —
    the rest of a stream cannot be read without reading all of it."""
    try:
        n: int | None = len(dataset)  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        n = None
    digest = hashlib.sha256(repr(getattr(dataset, "source", type(dataset).__qualname__)).encode())
    _hash_sample(digest, next(iter(dataset)))
    return {"samples": n, "sha256": digest.hexdigest(), "stream": "first sample and source only"}


def dataset_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """Length plus a hash of the labels (when exposed as a tensor) and of three samples: O(1) reads."""
    if is_stream(dataset):
        return stream_fingerprint(dataset)
    n = len(dataset)  # type: ignore[arg-type]
    digest = hashlib.sha256()
    targets = getattr(dataset, "targets", None)
    if torch.is_tensor(targets):
        digest.update(_tensor_bytes(targets))
    for index in sorted({0, n // 2, n - 1}):
        _hash_sample(digest, dataset[index])
    return {"samples": n, "sha256": digest.hexdigest()}


def update_fingerprint(
    updater: str,
    hyperparameters: dict[str, Any],
    input_manifest: Path | None,
    task_id: int | str,
    seed: int,
    dataset: Dataset,
) -> dict[str, Any]:
    """What identifies one update; a checkpoint is resumed only by an update with the same one."""
    input_state = None
    if input_manifest is not None:
        input_state = hashlib.sha256(input_manifest.read_bytes()).hexdigest()
    record = {
        "updater": updater,
        "hyperparameters": hyperparameters,
        "input_state": input_state,
        "task_id": task_id,
        "seed": seed,
        "data": dataset_fingerprint(dataset),
    }
    return json.loads(json.dumps(record, sort_keys=True))  # the form it takes once read back


def _leaf_differences(recorded: Any, expected: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, recorded, expected)`` for every leaf where two nested mappings differ."""
    if isinstance(recorded, dict) and isinstance(expected, dict):
        found: list[tuple[str, Any, Any]] = []
        for key in sorted(set(recorded) | set(expected), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in recorded or key not in expected:
                found.append((name, recorded.get(key, "<absent>"), expected.get(key, "<absent>")))
            else:
                found.extend(_leaf_differences(recorded[key], expected[key], name))
        return found
    return [] if recorded == expected else [(prefix or "fingerprint", recorded, expected)]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def differences(recorded: Any, expected: dict[str, Any]) -> str:
    """Per top-level key that differs, only the leaves that differ, by dotted name:
    ``task_id: checkpoint 1, this update 2; hyperparameters: checkpoint {optimizer.lr: 0.1}, this update {optimizer.lr: 0.05}``."""
    if not isinstance(recorded, dict):
        return f"it records no fingerprint ({_short(recorded)})"
    parts = []
    for key in sorted(set(recorded) | set(expected), key=str):
        old, new = recorded.get(key, "<absent>"), expected.get(key, "<absent>")
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            leaves = _leaf_differences(old, new)
            old_text = "{" + ", ".join(f"{name}: {_short(a)}" for name, a, _ in leaves) + "}"
            new_text = "{" + ", ".join(f"{name}: {_short(b)}" for name, _, b in leaves) + "}"
            parts.append(f"{key}: checkpoint {old_text}, this update {new_text}")
        else:
            parts.append(f"{key}: checkpoint {_short(old)}, this update {_short(new)}")
    return "; ".join(parts)
