"""Reading one version of a state folder, isolated from writers that swap or discard versions.

A version's files never change once written: every writer builds a new folder and renames it
into place (:mod:`retentive.state.inplace` exchanges whole folders, then renames or discards the
old one). So a directory descriptor pins one version: every file opened relative to it (never
through a symlink) belongs to that version, whatever the path names a moment later, and a file
once opened stays readable even if its folder is then discarded. :class:`FolderVersion` opens the
folder once and every file it reads relative to that descriptor, each read once into memory, so
that the caller hashes and deserialises the same bytes.

:func:`read_consistently` runs a read against one version; when it fails because the folder was
replaced or discarded under it (a file vanished, the path now names another folder), it starts
again from the path, up to :data:`ATTEMPTS` times. A failure in a folder the path still names is
the folder's own and is raised as it is.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from retentive.errors import StateError

#: How many versions a read tries before it gives up (each retry follows a swap seen mid-read).
ATTEMPTS = 5
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
T = TypeVar("T")


class FolderVersion:
    """One version of a folder, pinned by a directory descriptor; files are read relative to it.

    Raises :class:`FileNotFoundError` / :class:`NotADirectoryError` (from :func:`os.open`) when
    ``path`` names no folder; use it as a context manager so the descriptors are closed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, _DIR_FLAGS)
        self._files: dict[str, int] = {}

    def __enter__(self) -> FolderVersion:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def open(self, *names: str) -> None:
        """Open ``names`` now (pinning them to this version), before any is read.

        Raises :class:`FileNotFoundError` for a missing one, :class:`OSError` (``ELOOP``) for a
        symlink, :class:`IsADirectoryError` for anything that is not a regular file.
        """
        for name in names:
            if name in self._files:
                continue
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=self.fd)
            except OSError as error:
                if error.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
                    raise OSError(errno.ELOOP, "a symbolic link, which is never followed", name) from None
                raise
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise IsADirectoryError(f"{name} is not a regular file")
            self._files[name] = fd

    def has(self, name: str) -> bool:
        """Whether this version holds an entry ``name`` (a symlink counts; :meth:`open` refuses it)."""
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return False
        return True

    def size(self, name: str) -> int:
        """The size of ``name`` (opened first if it is not yet)."""
        self.open(name)
        return os.fstat(self._files[name]).st_size

    def descriptor(self, name: str) -> int:
        """The open descriptor of ``name`` (opened first if it is not yet); closed with the version."""
        self.open(name)
        return self._files[name]

    def read(self, name: str) -> bytes:
        """The whole content of ``name``, read once (opened first if it is not yet)."""
        self.open(name)
        fd = self._files[name]
        size = os.fstat(fd).st_size
        chunks: list[bytes] = []
        offset = 0
        while True:
            block = os.pread(fd, max(size - offset, 1 << 16), offset)
            if not block:
                return b"".join(chunks)
            chunks.append(block)
            offset += len(block)

    def is_current(self) -> bool:
        """Whether ``path`` still names this folder (no swap, rollback or discard since it was opened)."""
        try:
            now = os.stat(self.path)
        except OSError:
            return False
        pinned = os.fstat(self.fd)
        return (now.st_dev, now.st_ino) == (pinned.st_dev, pinned.st_ino)


def read_consistently(path: Path, read: Callable[[FolderVersion], T]) -> T:
    """``read(version)`` against one version of ``path``, retried from the path when that version
    was swapped out or discarded while it ran; the last failure is raised as it is.

    ``read`` raises :class:`StateError` or :class:`OSError`; an :class:`OSError` from opening
    ``path`` itself (no such folder) is the caller's to report.
    """
    for attempt in range(ATTEMPTS):
        version = FolderVersion(path)
        try:
            return read(version)
        except (StateError, OSError):
            if attempt + 1 < ATTEMPTS and not version.is_current():
                continue
            raise
        finally:
            version.close()
    raise AssertionError("unreachable")  # pragma: no cover
