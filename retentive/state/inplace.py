"""In-place updates: ``input_state_folder == output_state_folder``, as Renate pipelines run.

The folder is replaced crash-safely, and the version it replaced is kept beside it, as
``.retentive-previous-<name>``, for :func:`rollback` until the next successful in-place update:

1. the new state is written completely into a staging folder beside the target; its manifest
   records ``replaces``, the sha256 of the manifest it replaces;
2. one atomic ``renameat2(RENAME_EXCHANGE)`` swaps the staging folder and the target: from this
   instant the target path holds the new state, and the staging path the old one;
3. the older rollback copy is discarded and the old state is renamed to the rollback copy.

A SIGKILL before step 2 leaves the old state in place (the staging folder is debris, removed by
the next writer); after it, the new one. Between steps 2 and 3 the old state sits in a staging
folder; :func:`recover` (run under the lock by every in-place writer and by :func:`rollback`)
recognises it by the ``replaces`` hash and finishes step 3. A reader never sees a mix: the
target path names one complete, verified folder at every instant. Rolling back exchanges the
rollback copy and the target the same way, then discards the rolled-back state.

Each in-place writer commits only onto the version it read: under the lock it compares the
target's version with the one it read (:mod:`~retentive.state.concurrency`) and raises
:class:`~retentive.errors.StateConflictError` otherwise. Steps 2 and 3 run with SIGINT and SIGTERM
held back (:mod:`~retentive.state.interrupts`), and a failure during step 2 is judged from the file
system: the staging folder is removed only while it still holds the new state.

The exchange is Linux's ``renameat2``; where it is missing, in-place updates are refused (two
plain renames would leave a moment with no folder at the target path).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import warnings
from pathlib import Path

from retentive.errors import StateConflictError, StateError
from retentive.state.concurrency import check_unchanged, describe_version, manifest_digest
from retentive.state.format import State, _fsync_dir, load_state, read_manifest, write_staging
from retentive.state.interrupts import CommitGuard
from retentive.state.locking import OutputLock, refuse_symlink
from retentive.state.staging import new_staging_folder, remove_stale_staging, staging_folders

PREVIOUS_PREFIX = ".retentive-previous-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def previous_path(target: str | os.PathLike[str]) -> Path:
    """Where the version an in-place update replaced is kept for :func:`rollback`."""
    target = Path(target)
    return target.parent / f"{PREVIOUS_PREFIX}{target.name}"


def is_in_place(input_folder: str | os.PathLike[str] | None, output_folder: str | os.PathLike[str]) -> bool:
    """Whether an update reads and writes the same folder."""
    if input_folder is None:
        return False
    return Path(output_folder).resolve() == Path(input_folder).resolve()


def exchange(a: Path, b: Path) -> None:
    """Swap two directory entries atomically (both must exist)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError) as error:
        raise StateError(
            "in-place updates need an atomic exchange of two folders (Linux renameat2), which this system "
            f"lacks ({error}); write the new state to another folder instead"
        ) from error
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        errno = ctypes.get_errno()
        raise StateError(
            f"cannot exchange {str(a)!r} and {str(b)!r} atomically: {os.strerror(errno)}; "
            "in-place updates need a file system with renameat2(RENAME_EXCHANGE) (ext4, xfs, btrfs, tmpfs)"
        )
    _fsync_dir(a.parent)


def _replaces(folder: Path) -> str | None:
    try:
        return read_manifest(folder).get("replaces")
    except StateError:
        return None


def _discard(folder: Path) -> None:
    """Remove ``folder`` by first renaming it to debris (so a crash mid-removal leaves only debris)."""
    if not folder.exists():
        return
    debris = new_staging_folder(folder.parent / f"discard-{folder.name}")
    os.rename(folder, debris)
    shutil.rmtree(debris, ignore_errors=True)


def recover(target: Path) -> None:
    """Finish a swap or a rollback a crash interrupted, then drop staging debris (lock held).

    - a staging folder whose manifest the target's ``replaces`` names is the state the target
      replaced: it becomes the rollback copy (step 3 above);
    - a rollback copy that itself replaces the target is a rolled-back version: it is discarded.
    """
    current = manifest_digest(target)
    replaced = _replaces(target)
    previous = previous_path(target)
    for staging in staging_folders(target.parent, target.name):
        if replaced is not None and manifest_digest(staging) == replaced:
            _discard(previous)
            os.rename(staging, previous)
            _fsync_dir(target.parent)
    if previous.exists() and current is not None and _replaces(previous) == current:
        _discard(previous)
    remove_stale_staging(target)


def swap_in(
    target: Path, state: State, lock: OutputLock, expected: str | None = None, guard: CommitGuard | None = None
) -> Path:
    """Replace the state folder ``target`` by ``state`` crash-safely, keeping the old one for rollback.

    ``expected``: the version (:func:`~retentive.state.concurrency.manifest_digest`) the caller
    read; if ``target`` holds another one now, :class:`StateConflictError` is raised before anything
    is written (the new state is discarded). ``guard`` holds SIGINT and SIGTERM back from the
    exchange on; the caller stops it and delivers what it held (without one, a guard of its own
    delivers at the end: :class:`~retentive.state.interrupts.UpdateInterrupted` says whether the
    new state is in place).
    """
    if not lock.held:
        raise StateError(f"swap_in was given a lock on {str(lock.target)!r} that is not held")
    if not target.is_dir():
        raise StateError(f"in-place update of {str(target)!r}: the folder does not exist")
    own_guard, guard = guard is None, guard or CommitGuard()
    committed, old_digest = False, None
    try:
        try:
            recover(target)
            if expected is not None:
                check_unchanged(
                    target,
                    expected,
                    f"{expected[:12]}",
                    "Nothing was written; the new state was discarded "
                    "(build the updater again from the folder's current state to update it).",
                )
            old_digest = manifest_digest(target)
            staging = write_staging(
                target, State(state.model, state.learner, state.memory, {**state.manifest, "replaces": old_digest})
            )
            committed = _exchange_staged(staging, target, guard)
            _keep_previous(staging, target)
        except BaseException:
            # judged from the file system: while the target still holds the old state, every staging
            # folder of it (the lock is held) holds the new one or debris, never the old state
            committed = old_digest is not None and manifest_digest(target) != old_digest
            if old_digest is not None and not committed:
                remove_stale_staging(target)
            raise
    except OSError as error:
        state_now = "the new state is in place" if committed else "the folder is unchanged"
        raise StateError(f"the in-place update of {str(target)!r} failed ({error}); {state_now}") from error
    finally:
        if own_guard:
            guard.deliver(committed, _interrupted(target, committed))
    return target


def _interrupted(target: Path, committed: bool) -> str:
    if committed:
        return f"interrupted after the new state of {str(target)!r} was committed; the update is complete"
    return f"interrupted before the new state of {str(target)!r} was committed; the folder is unchanged"


def _exchange_staged(staging: Path, target: Path, guard: CommitGuard) -> bool:
    """Exchange the complete ``staging`` folder with ``target`` (signals held from here on); return
    True. On failure, whether the exchange happened is read from the file system: the staging
    folder is removed only while it still holds the new state, never once it holds the old one."""
    new_digest = manifest_digest(staging)
    guard.start()
    try:
        exchange(staging, target)
    except BaseException as error:
        if manifest_digest(target) != new_digest:  # not exchanged: staging still holds the new state
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if not isinstance(error, OSError):
            raise
        warnings.warn(
            f"the new state of {str(target)!r} is in place, but syncing its folder failed: {error}", stacklevel=3
        )
    return True


def _keep_previous(staging: Path, target: Path) -> None:
    """After the exchange ``staging`` holds the old state: make it the rollback copy. A failure here
    leaves the commit in place; :func:`recover`, run by the next writer, finishes the move."""
    try:
        _discard(previous_path(target))
        os.rename(staging, previous_path(target))
        _fsync_dir(target.parent)
    except OSError as error:
        warnings.warn(
            f"the new state of {str(target)!r} is committed, but keeping the old one as {previous_path(target).name} "
            f"failed ({error}); the next update or rollback of that folder finishes it",
            stacklevel=3,
        )


def rollback(folder: str | os.PathLike[str], expected: str | None = None) -> Path:
    """Put back the version the last in-place update of ``folder`` replaced, bit for bit.

    A compare-and-swap under the folder's lock: ``expected`` (a version, or a prefix of at least
    12 hex digits) is the version to undo; if the folder holds another, :class:`StateConflictError`
    is raised and nothing changes. The rollback copy must be the version the current state
    replaced (its ``replaces``), else the rollback is refused as a conflict too. The rolled-back
    state is discarded, so a second rollback (with no older copy kept) is refused. Raises
    :class:`StateError` before changing anything when there is no previous version or it does not
    verify. SIGINT and SIGTERM are held back during the exchange (see
    :mod:`~retentive.state.interrupts`).
    """
    target = Path(folder)
    with OutputLock(target) as lock:
        assert lock.held
        recover(target)
        previous = previous_path(target)
        refuse_symlink(previous, "the rollback copy")
        current = manifest_digest(target)
        if expected is not None and (len(expected) < 12 or current is None or not current.startswith(expected.lower())):
            raise StateConflictError(
                f"{str(target)!r} holds version {describe_version(target)}, not {expected!r}, the version to roll back; "
                "nothing was changed"
            )
        if not previous.is_dir():
            raise StateError(
                f"{str(target)!r} has no previous version to roll back to: only an in-place update keeps one "
                f"({previous.name}), until the next one succeeds"
            )
        if _replaces(target) != manifest_digest(previous):
            raise StateConflictError(
                f"{previous.name} ({describe_version(previous)}) is not the version {str(target)!r} replaced "
                f"(it holds {describe_version(target)}); nothing was changed"
            )
        load_state(previous)  # verify before touching anything
        guard = CommitGuard()
        committed = False
        try:
            guard.start()
            exchange(previous, target)
            committed = True
            _discard(previous)
            _fsync_dir(target.parent)
        finally:
            guard.deliver(
                committed,
                f"interrupted after the rollback of {str(target)!r} was committed"
                if committed
                else f"interrupted before the rollback of {str(target)!r}; nothing was changed",
            )
    return target
