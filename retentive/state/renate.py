"""Reading a Renate 0.5.2 state folder into a retentive state folder (``retentive import-renate``).

A Renate state folder holds ``model.ckpt`` (the model's state_dict), ``learner.ckpt`` (a
Lightning checkpoint whose ``memory_buffer`` entry is the replay buffer's state: capacity, count,
metadata tensors) and ``memory_buffer/<i>.pt`` (one stored sample per file). Every file is read
with ``torch.load(weights_only=True)``, so nothing in it can run code; a file that needs more (a
pickled class, a lambda) is refused, naming it. What is converted:

- the model weights, less Renate's ``_extra_state`` entries (a pickle of the constructor
  arguments packed into a tensor: decoding it would run the pickle, so it is dropped unread);
- the buffer's samples and metadata, in slot order (Renate's ``outputs`` metadata become DER's
  ``logits``), with the count of samples seen; the buffer must be a reservoir or greedy
  class-balanced one, the two retentive keeps alike; slot ``i`` gets the sample id of row ``i``
  of a source named by ``learner.ckpt``'s sha256 (:mod:`retentive.memory.identity`), the same
  on every import;

The result is a format-v1 state folder for the named updater (its component list, so the next
update with that updater and ``memory_size`` equal to the buffer's capacity continues from it),
written atomically; its manifest records the source files and their sha256.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import torch

from retentive.errors import StateError
from retentive.memory.identity import whole_source_identity
from retentive.methods.registry import renate_importable
from retentive.state.format import State, check_output_folder, save_state

MODEL_FILE, LEARNER_FILE, BUFFER_DIR = "model.ckpt", "learner.ckpt", "memory_buffer"
#: Renate's buffer classes -> the retentive memory policy that keeps samples the same way
POLICIES = {"ReservoirBuffer": "reservoir", "GreedyClassBalancingBuffer": "greedy_class_balanced"}
#: Renate's metadata names -> retentive's
METADATA = {"outputs": "logits"}
#: the built-in updaters an imported state can continue with, and their components in order: the
#: methods whose spec declares ``renate_import`` (retentive.methods); plug-ins' are read at import
UPDATER_COMPONENTS: dict[str, tuple[str, ...]] = renate_importable(entry_points=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def safe_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; a file that would need unpickling code is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise StateError(f"{str(path)!r} is missing") from error
    except Exception as error:  # the unpickler's refusal or a corrupt file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StateError(
            f"{str(path)!r} cannot be read without running the code its pickle names ({first}); retentive "
            "refuses it. Load it yourself in a process you trust and save its tensors with torch.save"
        ) from error


def _model_weights(folder: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    raw = safe_load(folder / MODEL_FILE)
    weights = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(weights, dict) or not all(torch.is_tensor(v) for v in weights.values()):
        raise StateError(f"{str(folder / MODEL_FILE)!r} does not hold a state_dict of tensors")
    dropped = [k for k in weights if k.split(".")[-1] == "_extra_state"]
    return {k: v for k, v in weights.items() if k not in dropped}, dropped


def _sample_files(buffer_dir: Path, size: int) -> list[Path]:
    files = (
        {int(m.group(1)): p for p in buffer_dir.iterdir() if (m := re.fullmatch(r"(\d+)\.pt", p.name))}
        if buffer_dir.is_dir()
        else {}
    )
    missing = [i for i in range(size) if i not in files]
    if missing:
        raise StateError(f"the Renate buffer in {str(buffer_dir)!r} holds {size} samples but lacks {missing[:5]}.pt")
    return [files[i] for i in range(size)]


def _memory(folder: Path, buffer: dict[str, Any]) -> tuple[dict[str, Any], str]:
    kind = buffer.get("buffer_class_name")
    if kind not in POLICIES:
        raise StateError(f"the Renate buffer is a {kind!r}; retentive imports {sorted(POLICIES)}")
    capacity, seen = int(buffer["max_size"]), int(buffer["count"])
    metadata = {METADATA.get(k, k): v for k, v in (buffer.get("metadata") or {}).items()}
    size = min(capacity, seen, len(buffer.get("indices") or {}))
    inputs, targets = [], []
    for path in _sample_files(folder / BUFFER_DIR, size):
        point = safe_load(path)
        if not isinstance(point, (tuple, list)) or len(point) < 2 or not torch.is_tensor(point[0]):
            raise StateError(f"{str(path)!r} is not an (inputs, targets) sample of tensors")
        inputs.append(point[0])
        targets.append(torch.as_tensor(point[1]).long().reshape(()))
    storage: dict[str, torch.Tensor] = {
        "inputs": torch.stack(inputs) if inputs else torch.empty(0),
        "targets": torch.stack(targets) if targets else torch.empty(0, dtype=torch.long),
        "task_ids": torch.zeros(size, dtype=torch.long),
    }
    for key, values in metadata.items():
        if not torch.is_tensor(values) or values.shape[0] < size:
            raise StateError(f"the Renate buffer's metadata {key!r} does not hold one row per sample")
        storage[key] = values[:size].clone()
    # sample identity: slot i is row i of the Renate buffer, named by its checkpoint's sha256
    identity, source = whole_source_identity("renate-" + _sha256(folder / LEARNER_FILE), size)
    storage.update(identity)
    generator = torch.Generator().manual_seed(int(buffer.get("seed", 0)))
    state = {
        "capacity": capacity,
        "policy": POLICIES[kind],
        "size": size,
        "seen": seen,
        "generators": {"insert": generator.get_state(), "sample": generator.get_state()},
        "storage": storage,
        "dtypes": {k: str(v.dtype).replace("torch.", "") for k, v in storage.items()},
        "sources": [source],
    }
    return state, kind


def _learner(types: tuple[str, ...]) -> dict[str, Any]:
    import retentive.components

    components = [getattr(retentive.components, name)(1.0) for name in types]
    rng = __import__("random").Random(0).getstate()
    return {
        "learner": {
            "total_steps": 0,
            "components": [c.state_dict() for c in components],
            "component_types": list(types),
            "generator": torch.Generator().manual_seed(0).get_state(),
            "rng": [rng[0], list(rng[1]), rng[2]],
        },
        "updater": {"updates_done": 1, "tasks_seen": {}, "task_order": []},
    }


def import_renate(
    renate_folder: str | os.PathLike[str], new_folder: str | os.PathLike[str], updater: str | None = None
) -> Path:
    """Convert the Renate state folder ``renate_folder`` into the new state folder ``new_folder``.

    ``updater`` names the retentive updater that will continue from it (default: DER when the
    buffer stores logits, ER when it stores samples only, fine-tuning without a buffer). Every
    check runs, and every file is read, before anything is written.
    """
    source, target = Path(renate_folder), Path(new_folder)
    if not source.is_dir():
        raise StateError(f"the Renate state folder {str(source)!r} does not exist or is not a folder")
    if not (source / MODEL_FILE).is_file():
        raise StateError(f"{str(source)!r} is not a Renate state folder: {MODEL_FILE} is missing")
    check_output_folder(target, None)
    importable = renate_importable()
    if updater is not None and updater not in importable:
        raise StateError(f"updater must be one of {sorted(importable)}, got {updater!r}")
    weights, dropped = _model_weights(source)
    memory, kind, read = _read_memory(source)
    if updater is None:
        updater = (
            "DarkExperienceReplayModelUpdater"
            if memory and "logits" in memory["storage"]
            else "ExperienceReplayModelUpdater"
            if memory
            else "FineTuningModelUpdater"
        )
    components = importable[updater]
    if memory is None:
        if components:
            raise StateError(f"{updater} replays a memory, but {str(source)!r} holds no Renate buffer")
        memory = {
            "capacity": 0,
            "policy": "reservoir",
            "size": 0,
            "seen": 0,
            "generators": {"insert": torch.Generator().get_state(), "sample": torch.Generator().get_state()},
            "storage": {},
            "dtypes": {},
        }
    elif "LogitMSE" in components and "logits" not in memory["storage"]:
        raise StateError(f"{updater} needs the logits stored with each sample; the Renate buffer holds none")
    manifest = _manifest(updater, memory, source, kind, dropped, read)
    save_state(target, State(model=weights, learner=_learner(components), memory=memory, manifest=manifest))
    return target


def _read_memory(source: Path) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """The memory state converted from the Renate buffer (``None``: the folder holds none), the
    buffer's kind, and the files read (their checksums go into the manifest)."""
    memory: dict[str, Any] | None = None
    kind = None
    read = [MODEL_FILE]
    if (source / LEARNER_FILE).is_file():
        checkpoint = safe_load(source / LEARNER_FILE)
        read.append(LEARNER_FILE)
        buffer = checkpoint.get("memory_buffer") if isinstance(checkpoint, dict) else None
        if isinstance(buffer, dict):
            memory, kind = _memory(source, buffer)
            read += [f"{BUFFER_DIR}/{i}.pt" for i in range(memory["size"])]
    return memory, kind, read


def _manifest(
    updater: str, memory: dict[str, Any], source: Path, kind: str | None, dropped: list[str], read: list[str]
) -> dict[str, Any]:
    """The new state's manifest, recording where it was imported from."""
    return {
        "updater": updater,
        "hyperparameters": {"memory_size": memory["capacity"]},
        "updates_done": 1,
        "tasks_seen": {},
        "task_order": [],
        "world_size": 1,
        "effective_precision": None,
        "memory": {"size": memory["size"], "seen": memory["seen"], "keys": list(memory["storage"])},
        "imported_from": {
            "renate_folder": str(source.resolve()),
            "buffer": kind,
            "dropped_model_keys": dropped,
            "files": {name: _sha256(source / name) for name in read},
        },
    }
