"""Which versions at a URL may be removed: never one that is, was just, or may yet become committed.

A publish removes, after its commit, only the versions that are neither the committed one nor one
of the pointer's ``previous`` (the last ``keep_previous`` committed before it), ``challenger`` or
``rejected`` (a model home's kept candidates), and whose id says
they were begun more than :data:`GRACE_SECONDS` ago. The grace period protects another writer's
upload in flight: a publish refuses to commit an upload begun more than :data:`COMMIT_DEADLINE_SECONDS`
ago (half the grace period), so no version old enough to be removed can still become committed.
This assumes the writers' clocks agree to within the other half (30 minutes). Versions whose
names are not retentive version ids are left alone.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from typing import Any

from retentive.state.remote.names import VERSION_ID, VERSIONS, version_time
from retentive.state.remote.pointer import read_pointer

#: an uncommitted version younger than this (by its id) is never removed: it may be in flight
GRACE_SECONDS = 3600.0
#: a publish whose upload began longer ago than this commits nothing (its version could be removed)
COMMIT_DEADLINE_SECONDS = GRACE_SECONDS / 2


def kept_versions(pointer: Any) -> set[str]:
    """The committed version and the others its pointer records: the previous ones, and a home's
    challenger and rejected candidates."""
    if pointer is None:
        return set()
    challenger = [] if pointer.challenger is None else [pointer.challenger]
    entries = [*pointer.previous, *challenger, *pointer.rejected]
    return {pointer.version, *(entry["version"] for entry in entries)}


def remove_stale_versions(fs: Any, root: str, url: str, now: datetime | None = None) -> list[str]:
    """Remove the versions at ``url`` that are not kept and older than the grace period; best effort.

    The pointer is read afresh here, so a commit by another writer since this one's is respected.
    Returns the removed versions' paths.
    """
    now = now or datetime.now(timezone.utc)
    removed: list[str] = []
    try:
        keep = kept_versions(read_pointer(fs, root, url))
        fs.invalidate_cache(f"{root}/{VERSIONS}")  # another process may have published since a listing
        entries = fs.ls(f"{root}/{VERSIONS}", detail=False)
    except Exception:  # nothing to clean, or listing is not allowed: the commit stands either way
        return removed
    if not keep:
        return removed
    for entry in entries:
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name in keep or not VERSION_ID.match(name):
            continue
        if (now - version_time(name)).total_seconds() < GRACE_SECONDS:
            continue
        with contextlib.suppress(Exception):
            fs.rm(entry, recursive=True)
            removed.append(entry)
    return removed
