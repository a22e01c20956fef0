"""The checks of benchmarks/concurrency.py: what one read of a state must satisfy, and what counts
as a false tamper error, independently of the library's own checksum verification.

``load_state`` verifies each payload's sha256 and then reads the payload again by path, so a
payload of another version can pass the checksum. These checks look at what was actually
deserialised:

- the counters of ``learner.pt`` (``updates_done``, ``tasks_seen``, ``task_order``) equal the
  manifest's: every update appends a unique task id, so two versions never agree by chance;
- ``memory.pt``'s ``seen`` and ``size`` equal the manifest's ``memory`` record;
- ``model.pt`` and ``learner.pt`` re-serialised with ``torch.save`` hash to the manifest's sha256
  (exact: used only where :func:`exact_payloads` found the round trip byte-identical);
- afterwards, against the writers' registry: the model and memory content fingerprints equal those
  the writer of the manifest's last task recorded when it committed (:func:`fingerprint`).
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import torch

#: A StateError with one of these phrases claims that a file was altered or is gone: nobody
#: tampers with or deletes anything in this benchmark, so each one is false.
TAMPER = re.compile(r"modified|truncated|does not match|is missing|missing although|checksum", re.IGNORECASE)
#: Payloads whose bytes ``torch.save`` reproduces exactly from their loaded content (checked per run).
ROUND_TRIP_CANDIDATES = ("model.pt", "learner.pt")


def _feed(digest: Any, value: Any) -> None:
    if torch.is_tensor(value):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(repr(value).encode())


def fingerprint(value: Any) -> str:
    """A sha256 of a payload's content (tensors by dtype, shape and bytes; containers in key order)."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def serialised_sha256(payload: Any) -> str:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return hashlib.sha256(buffer.getbuffer()).hexdigest()


def payloads(state: Any) -> dict[str, Any]:
    return {"model.pt": state.model, "learner.pt": state.learner, "memory.pt": state.memory}


def exact_payloads(state: Any) -> list[str]:
    """The payloads of ``state`` (a verified, quiescent one) whose re-serialisation is byte-exact."""
    files = state.manifest.get("files", {})
    return [
        name
        for name in ROUND_TRIP_CANDIDATES
        if serialised_sha256(payloads(state)[name]) == files.get(name, {}).get("sha256")
    ]


def _last(order: Any) -> Any:
    return order[-1] if isinstance(order, list) and order else None


def task_order(state: Any) -> list[Any]:
    """The tasks of every update the state descends from, in order (manifest, else learner.pt)."""
    order = state.manifest.get("task_order")
    if order is None and isinstance(state.learner, dict):
        order = state.learner.get("updater", {}).get("task_order")
    return list(order or [])


def inspect_read(state: Any, exact: list[str]) -> dict[str, Any]:
    """The mismatches between ``state``'s manifest and the payloads it was loaded with, and the
    fingerprints the post-run registry check needs."""
    manifest, mismatches = state.manifest, []
    counters = state.learner.get("updater", {}) if isinstance(state.learner, dict) else {}
    for key in ("updates_done", "tasks_seen", "task_order"):
        if key in manifest and key in counters and manifest[key] != counters[key]:
            mismatches.append(f"learner.pt {key} {_short(counters[key])} != manifest {_short(manifest[key])}")
    recorded = manifest.get("memory", {})
    for key in ("seen", "size"):
        held = state.memory.get(key) if isinstance(state.memory, dict) else None
        if key in recorded and held is not None and int(held) != int(recorded[key]):
            mismatches.append(f"memory.pt {key} {int(held)} != manifest memory.{key} {recorded[key]}")
    files = manifest.get("files", {})
    for name in exact:
        if serialised_sha256(payloads(state)[name]) != files.get(name, {}).get("sha256"):
            mismatches.append(f"{name} content is not the file the manifest's sha256 names")
    return {
        "task": _last(task_order(state)),
        "updates_done": manifest.get("updates_done"),
        "model_fp": fingerprint(state.model),
        "memory_fp": fingerprint(state.memory),
        "mismatches": mismatches,
    }


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 3:
        return f"[..., {', '.join(map(repr, value[-2:]))}] ({len(value)})"
    if isinstance(value, dict) and len(value) > 3:
        return f"{{{len(value)} tasks}}"
    return repr(value)


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:400]


def is_false_tamper(error: BaseException) -> bool:
    """A StateError claiming a file was modified, truncated or missing (nobody alters any here)."""
    from retentive.errors import StateError

    return isinstance(error, StateError) and bool(TAMPER.search(str(error)))
