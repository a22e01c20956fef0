"""Debris that interrupted runs leave beside state folders: found, described, and removed safely.

Every such entry has a hidden name starting with ``.retentive-``, and none is ever read as a state:

* ``.retentive-staging-<name>-<hex>``: a write of ``<name>`` that did not finish; stale unless an
  update holds ``<name>``'s lock (it is then being written).
* ``.retentive-lock-<name>``: a lock file; stale unless a live process holds it.
* ``.retentive-resume-<name>``: checkpoints of an unfinished update of ``<name>``; kept for
  ``resume=True`` while ``<name>`` does not exist, stale once it does (e.g. a kill struck while
  they were being removed after the save).

The next update writing ``<name>`` removes that name's stale staging folders and takes over its
stale lock by itself; :func:`remove_leftovers` tidies a whole folder, taking each name's lock
first so that it never touches anything a running update uses.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from retentive.errors import StateError
from retentive.state.locking import LOCK_PREFIX, OutputLock, lock_is_held, read_holder
from retentive.state.resume import RESUME_PREFIX
from retentive.state.staging import STAGING_PREFIX, staging_target_name


@dataclass
class Leftover:
    path: Path
    kind: str  # "staging", "lock" or "resume"
    target: str
    stale: bool
    note: str


def find_leftovers(parent: str | os.PathLike[str]) -> list[Leftover]:
    """Every ``.retentive-*`` entry in ``parent``, classified."""
    parent = Path(parent)
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        name = entry.name
        if name.startswith(STAGING_PREFIX):
            target = staging_target_name(entry) or name[len(STAGING_PREFIX) :]
            busy = lock_is_held(parent / f"{LOCK_PREFIX}{target}")
            note = (
                "being written now"
                if busy
                else (f"left by an interrupted write; removed by the next update writing {target!r}")
            )
            found.append(Leftover(entry, "staging", target, not busy, note))
        elif name.startswith(LOCK_PREFIX):
            target = name[len(LOCK_PREFIX) :]
            if lock_is_held(entry):
                pid = read_holder(entry).get("pid", "?")
                found.append(Leftover(entry, "lock", target, False, f"held by pid {pid}: an update is running"))
            else:
                found.append(Leftover(entry, "lock", target, True, "its holder exited; the next update takes it over"))
        elif name.startswith(RESUME_PREFIX):
            target = name[len(RESUME_PREFIX) :]
            done = (parent / target).exists()
            note = (
                "its output exists, so they are no longer needed"
                if done
                else ("an unfinished update; rerun it with resume=True to continue")
            )
            found.append(Leftover(entry, "resume", target, done, note))
    return found


def remove_leftovers(parent: str | os.PathLike[str]) -> list[Path]:
    """Remove the stale entries in ``parent`` (never one a running update holds); return them."""
    removed = []
    for leftover in find_leftovers(parent):
        if not leftover.stale:
            continue
        try:
            lock = OutputLock(Path(parent) / leftover.target).acquire()
        except StateError:
            continue  # an update started meanwhile: leave its files alone
        try:
            if leftover.kind == "resume" and not (Path(parent) / leftover.target).exists():
                continue
            if leftover.kind in ("staging", "resume"):
                shutil.rmtree(leftover.path, ignore_errors=True)
            removed.append(leftover.path)
        finally:
            lock.release()  # for a stale lock file, releasing is what removes it
    return removed
