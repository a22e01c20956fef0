"""Staging folders: where a state is written before it is renamed into place.

A state is written to ``.retentive-staging-<name>-<12 hex>`` beside its target and renamed to
``<name>`` once complete, so a crash leaves at most a staging folder, never a half-written target.
A staging folder is created with ``mkdir``, which fails on any existing entry (a planted symbolic
link included), and renamed into place with ``renameat2(RENAME_NOREPLACE)`` where the system has
it, so that an entry appearing at the target meanwhile is never replaced. Only the holder of the target's lock (:mod:`retentive.state.locking`) writes its staging folders, so any
staging folder found while holding that lock is debris of a crashed writer and is removed. Loading
a staging folder as a state is refused (:func:`retentive.state.read_manifest`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errnos
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from retentive.errors import StateError

STAGING_PREFIX = ".retentive-staging-"
_STAGING = re.compile(re.escape(STAGING_PREFIX) + r"(?P<name>.+)-(?P<tag>[0-9a-f]{12})$")


def new_staging_folder(target: str | os.PathLike[str]) -> Path:
    """A fresh, unused staging path beside ``target`` (not created)."""
    target = Path(target)
    return target.parent / f"{STAGING_PREFIX}{target.name}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def discarded_on_failure(staging: Path, target: Path, action: str = "writing the state to") -> Iterator[Path]:
    """Run the block that fills ``staging`` (and renames it to ``target``); on any failure remove
    ``staging``, so nothing is left, and report an ``OSError`` as a :class:`StateError` naming
    ``target`` (``"<action> <target> failed (...); nothing was written there"``)."""
    try:
        yield staging
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise StateError(f"{action} {str(target)!r} failed ({error}); nothing was written there") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def rename_noreplace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, failing with ``FileExistsError`` if ``target`` exists (also a
    dangling symbolic link). Atomic with ``renameat2``; elsewhere checked just before a plain rename."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        if renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errnos.EINVAL, errnos.ENOSYS):  # other than "not supported here"
            raise OSError(code, os.strerror(code), str(target))
    if os.path.lexists(target):
        raise FileExistsError(errnos.EEXIST, os.strerror(errnos.EEXIST), str(target))
    os.rename(source, target)


def staging_target_name(path: str | os.PathLike[str]) -> str | None:
    """The name of the target a staging folder was writing, or ``None`` if ``path`` is not one."""
    match = _STAGING.match(Path(path).name)
    return match.group("name") if match else None


def is_staging(path: str | os.PathLike[str]) -> bool:
    return Path(path).name.startswith(STAGING_PREFIX)


def staging_folders(parent: str | os.PathLike[str], target_name: str | None = None) -> list[Path]:
    """Every staging folder in ``parent`` (only those for ``target_name`` when given)."""
    try:
        entries = sorted(Path(parent).iterdir())
    except OSError:
        return []
    return [p for p in entries if is_staging(p) and (target_name is None or staging_target_name(p) == target_name)]


def remove_stale_staging(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the staging folders a crashed writer left for ``target``; the caller holds its lock."""
    target = Path(target)
    removed = []
    for folder in staging_folders(target.parent, target.name):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
