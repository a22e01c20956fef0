"""Optimistic concurrency for local state folders: a writer commits only onto the version it read.

A folder's *version* is the sha256 of its manifest's bytes. The manifest lists the sha256 of every
payload, so the version names the whole state; every commit changes it (an in-place update's
manifest records ``replaces``, the version it replaced, and a rollback puts back the version that
the current one replaced).

An updater records the version it read when it is built (:func:`read_versioned`), without taking
any lock: the version names exactly what was loaded. Every writer of an existing folder (an
in-place update, :func:`retentive.state.inplace.rollback`) holds the folder's lock
(:mod:`retentive.state.locking`) while it compares the folder's current version with the one it
read (:func:`check_unchanged`) and commits, so check and commit are one step for every other
writer: no lock is needed between reading and writing, and an update built before another
update or a rollback committed gets :class:`~retentive.errors.StateConflictError` instead of
silently undoing it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from retentive.errors import StateConflictError
from retentive.state.format import MANIFEST, State, load_state


def manifest_digest(folder: str | os.PathLike[str]) -> str | None:
    """The version of ``folder``: the sha256 of its manifest bytes (``None`` if it has none)."""
    raw = _manifest_bytes(Path(folder))
    return None if raw is None else hashlib.sha256(raw).hexdigest()


def _manifest_bytes(folder: Path) -> bytes | None:
    try:
        return (folder / MANIFEST).read_bytes()
    except OSError:
        return None


def read_versioned(folder: str | os.PathLike[str], map_location: str = "cpu") -> tuple[State, str]:
    """Load ``folder`` and return the state with its version, the version of exactly what was loaded:
    the digest of the manifest bytes the payloads were verified against, read once from the one
    version :func:`~retentive.state.format.load_state` pins. Errors are ``load_state``'s."""
    state = load_state(folder, map_location=map_location)
    assert state.version is not None  # load_state always sets it
    return state, state.version


def describe_version(folder: str | os.PathLike[str]) -> str:
    """``'<12 hex> (updates_done N, created T)'`` for the state in ``folder``, or why there is none."""
    raw = _manifest_bytes(Path(folder))
    if raw is None:
        return "no state (the folder or its manifest is gone)"
    text = hashlib.sha256(raw).hexdigest()[:12]
    try:
        manifest = json.loads(raw)
        return f"{text} (updates_done {manifest.get('updates_done')}, created {manifest.get('created')})"
    except (ValueError, AttributeError):
        return text


def check_unchanged(target: str | os.PathLike[str], expected: str, read: str, fate: str) -> None:
    """Raise :class:`StateConflictError` unless ``target`` still holds version ``expected``.

    The caller holds ``target``'s lock, so no other writer can commit between this check and its
    own commit. ``read`` describes the version read (for the message); ``fate`` says what becomes
    of the caller's new state.
    """
    current = manifest_digest(target)
    if current == expected:
        return
    raise StateConflictError(
        f"state folder {str(target)!r} changed since this update read it: it read version {read}, the folder now "
        f"holds {describe_version(target)}; another update or a rollback committed in between. {fate}"
    )
