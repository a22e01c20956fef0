"""Rollback at a URL or in a model home: the pointer moves back to the version committed before the
current one; the rolled-back version is kept among the home's ``rejected`` ones, to look at."""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retentive.errors import StateConflictError, StateError
from retentive.state.remote.filesystem import open_url
from retentive.state.remote.layout import AT_START, commit_guarded, describe, download
from retentive.state.remote.names import POINTER
from retentive.state.remote.pointer import POINTER_FORMAT, PointerMoved, read_pointer

#: how many refused or rolled-back versions a home keeps by default (newest first)
KEEP_REJECTED = 3


def rollback_url(
    url: str,
    storage_options: dict[str, Any] | None = None,
    *,
    expect: Any = AT_START,
    keep_rejected: int = KEEP_REJECTED,
) -> str:
    """Commit again the version committed before the current one at ``url``; return its id.

    The previous version is downloaded and verified first (every checksum), then the pointer is
    replaced only if it is still the one read (as a publish replaces it). The rolled-back version
    is no longer served and no longer a rollback target: it is kept, newest first, among the
    pointer's ``rejected`` versions (at most ``keep_rejected``), so it can be inspected or promoted
    again. A second rollback goes back further only if the pointer recorded more than one previous
    version (``publish_state(keep_previous=...)``). ``expect``: the id of the version the caller
    means to roll back (by default the one read here). Refused with :class:`StateError` when there
    is no previous version; :class:`StateConflictError` when another commit came first.
    """
    url = url.rstrip("/")
    fs, root = open_url(url, storage_options)
    pointer = read_pointer(fs, root, url)
    if pointer is None:
        raise StateError(
            f"{url!r} has no {POINTER} (no retentive state published there, or a plain folder): nothing to roll back"
        )
    if expect is not AT_START and expect != pointer.version:
        raise StateConflictError(
            f"{url!r} holds {describe(pointer)}, not version {expect}, the version to roll back; nothing was rolled back"
        )
    if not pointer.previous:
        raise StateError(
            f"{url!r} has no previous version to roll back to: version {pointer.version} is committed "
            "and no earlier one is kept"
        )
    target = pointer.previous[0]
    with tempfile.TemporaryDirectory(prefix="retentive-rollback-") as scratch:
        try:
            download(fs, root, url, target, Path(scratch))
        except StateError as error:
            raise StateError(
                f"cannot roll {url!r} back to version {target['version']}: {error}; nothing was changed"
            ) from None
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    data = {
        "format": POINTER_FORMAT,
        **target,
        "committed": now,
        "commit": uuid.uuid4().hex,
        "previous": pointer.previous[1:],
        "rolled_back_from": pointer.version,
    }
    if pointer.challenger is not None:
        data["challenger"] = pointer.challenger
    rejected = [{**pointer.entry(), "reason": f"rolled back at {now}"}, *pointer.rejected][: max(keep_rejected, 0)]
    if rejected:
        data["rejected"] = rejected
    try:
        commit_guarded(fs, root, url, data, pointer, "the rollback")
    except PointerMoved as moved:
        raise StateConflictError(
            f"{url!r} changed while rolling back: {describe(pointer)} was read, but {describe(moved.current)} is "
            "committed now; nothing was rolled back"
        ) from None
    return target["version"]
