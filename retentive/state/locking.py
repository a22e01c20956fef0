"""An exclusive claim on an output state folder, so that two updates never write one folder at once.

The lock is a file beside the target, ``.retentive-lock-<name>``, held with ``flock``. The kernel
drops an ``flock`` when its holder dies, even under SIGKILL, so a crashed update never leaves a
lock that blocks the next one: a lock file nobody holds is stale and is simply taken over. The
file records the holder's pid, host and start time, so a refusal names who holds the folder.

The lock file is opened with ``O_NOFOLLOW``: a symbolic link planted at its path is refused with a
:class:`StateError` naming it, and the file it points to is never opened or written. A lock record
that cannot be written (a full disk) is one :class:`StateError`; the file is unlinked and the lock
dropped, so nothing is left behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retentive.errors import StateError, StateLockedError

LOCK_PREFIX = ".retentive-lock-"
_ATTEMPTS = 20
#: A lock found busy is retried this long: :func:`lock_is_held` probes hold it for microseconds.
_PATIENCE_S = 0.1


def refuse_symlink(path: Path, what: str) -> None:
    """Raise :class:`StateError` if ``path`` is a symbolic link (never followed by a writer)."""
    if path.is_symlink():
        try:
            points_to = os.readlink(path)
        except OSError:
            points_to = "?"
        raise StateError(
            f"{what} {str(path)!r} is a symbolic link (to {points_to!r}); retentive never writes through one: "
            "remove it and retry"
        )


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file that guards ``target``."""
    target = Path(target)
    return target.parent / f"{LOCK_PREFIX}{target.name}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def read_holder(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The holder record in a lock file (``{}`` when empty or unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            record = json.loads(handle.read(1 << 16).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def lock_is_held(path: str | os.PathLike[str]) -> bool:
    """Whether a live process holds the lock file at ``path`` (False for a stale or missing file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we may have taken
    return False


def _describe(record: dict[str, Any]) -> str:
    pid, host, since = record.get("pid"), record.get("host"), record.get("acquired")
    if not isinstance(pid, int):
        return "another process"
    text = f"pid {pid} on {host}" + (f", since {since}" if since else "")
    if host == socket.gethostname() and not _pid_alive(pid):
        text += f"; pid {pid} has exited but a process it started (e.g. a DataLoader worker) still holds the lock"
    return text


def _flock_patiently(fd: int) -> None:
    deadline = time.monotonic() + _PATIENCE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class OutputLock:
    """Holds the lock on one output folder; use as a context manager or with acquire/release.

    Not re-entrant: a second ``OutputLock`` on the same target, even in the same process, is
    refused, which is what keeps two updaters in one program from writing one folder.
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = Path(target)
        self.path = lock_path(self.target)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> OutputLock:
        """Take the lock or raise :class:`StateLockedError` at once (never waits)."""
        if self._fd is not None:
            raise StateError(f"the lock on {str(self.target)!r} is already held by this OutputLock")
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateError(
                f"cannot create the folder {str(self.target.parent)!r} for output_state_folder "
                f"{str(self.target)!r}: {error}"
            ) from error
        for _ in range(_ATTEMPTS):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            except OSError as error:
                refuse_symlink(self.path, "the lock file")
                raise StateError(
                    f"cannot write beside output_state_folder {str(self.target)!r} "
                    f"(creating the lock file {str(self.path)!r} failed: {error})"
                ) from error
            try:
                _flock_patiently(fd)
            except BlockingIOError:
                record = read_holder(self.path)
                os.close(fd)
                raise StateLockedError(
                    f"output_state_folder {str(self.target)!r} is being written by another update "
                    f"({_describe(record)}); wait for it to finish or choose another output folder"
                ) from None
            except OSError as error:
                os.close(fd)
                raise StateError(f"cannot lock {str(self.path)!r}: {error}") from error
            # A releasing holder unlinks the file; if we locked an unlinked inode, start over.
            try:
                same = os.lstat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise StateLockedError(f"the lock file {str(self.path)!r} kept changing; another update is racing for it")
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "acquired": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        except OSError as error:
            self.release()
            raise StateError(
                f"cannot write the lock file {str(self.path)!r} beside output_state_folder {str(self.target)!r}: "
                f"{error.strerror or error}; nothing was written"
            ) from error
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if os.lstat(self.path).st_ino == os.fstat(fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass  # already gone; the flock is what matters and closing drops it
        finally:
            os.close(fd)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a lock never outlives its owner object
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
