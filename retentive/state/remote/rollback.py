"""Rollback at a URL: the pointer moves back to the version committed before the current one."""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retentive.errors import StateConflictError, StateError
from retentive.state.remote.filesystem import open_url
from retentive.state.remote.layout import describe, download
from retentive.state.remote.names import POINTER
from retentive.state.remote.pointer import POINTER_FORMAT, PointerMoved, commit_pointer, read_pointer


def rollback_url(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """Commit again the version committed before the current one at ``url``; return its id.

    The previous version is downloaded and verified first (every checksum), then the pointer is
    replaced only if it is still the one read (as a publish replaces it). The rolled-back version
    is no longer kept: a second rollback goes back further only if the pointer recorded more than
    one previous version (``publish_state(keep_previous=...)``). Refused with :class:`StateError`
    when there is no previous version; :class:`StateConflictError` when another commit came first.
    """
    url = url.rstrip("/")
    fs, root = open_url(url, storage_options)
    pointer = read_pointer(fs, root, url)
    if pointer is None:
        raise StateError(
            f"{url!r} has no {POINTER} (no retentive state published there, or a plain folder): nothing to roll back"
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
    data = {
        "format": POINTER_FORMAT,
        **target,
        "committed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": uuid.uuid4().hex,
        "previous": pointer.previous[1:],
        "rolled_back_from": pointer.version,
    }
    try:
        commit_pointer(fs, root, url, data, pointer)
    except PointerMoved as moved:
        raise StateConflictError(
            f"{url!r} changed while rolling back: {describe(pointer)} was read, but {describe(moved.current)} is "
            "committed now; nothing was rolled back"
        ) from None
    return target["version"]
