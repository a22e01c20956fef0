"""Large state payloads: written as a stream, read memory-mapped.

A payload is written by ``torch.save`` into a :class:`DigestingFile`, which hashes and writes it
block by block: it is never whole in memory twice, and the blocks of a memory-mapped tensor (a
disk-backed memory's rows) are handed back to the kernel as they are written
(:func:`retentive.mapped.release_pages`). A payload over :data:`MAPPED_PAYLOAD` bytes is hashed from
its pinned descriptor block by block and loaded memory-mapped from that same descriptor
(:func:`mapped_payload`), so a memory larger than RAM loads without being read into it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from retentive.errors import StateError
from retentive.mapped import holds_mapped_rows, release_pages
from retentive.state.budget import check_archive, check_declared
from retentive.state.reading import FolderVersion

#: the bytes hashed and written at a time
STREAM_BLOCK = 16 << 20
#: payloads larger than this are hashed from their file and loaded memory-mapped
MAPPED_PAYLOAD = 256 << 20
_FD_PATHS = "/proc/self/fd"


def maps(size: int) -> bool:
    """Whether a payload of ``size`` bytes is loaded memory-mapped (where descriptors have paths)."""
    return size > MAPPED_PAYLOAD and os.path.isdir(_FD_PATHS)


@contextlib.contextmanager
def _zip_checksums(on: bool) -> Iterator[None]:
    """torch's zip writer reads a whole record for its CRC32 before writing it, which would make a
    memory-mapped record resident whole; for those the CRC is left out (the file's sha256 in the
    manifest is what verifies it, and torch reads such files alike). Other payloads keep it."""
    serialization: Any = None
    with contextlib.suppress(ImportError):
        from torch.utils.serialization import config as serialization  # torch >= 2.5
    config = getattr(serialization, "save", None)
    if on or config is None:
        yield
        return
    before = config.compute_crc32
    config.compute_crc32 = False
    try:
        yield
    finally:
        config.compute_crc32 = before


def write_payload(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Write and flush one payload, streamed; return its manifest entry (hashed as written, not re-read)."""
    with open(path, "wb") as handle, _zip_checksums(not holds_mapped_rows(payload)):
        stream = DigestingFile(handle)
        try:
            torch.save(payload, stream)  # type: ignore[arg-type]  # a writable file-like object
        except RuntimeError:
            if stream.error is not None:  # torch's zip writer reports a failed write as a bare RuntimeError
                raise stream.error from None  # the OSError (a full disk) the caller turns into a StateError
            raise
        handle.flush()
        os.fsync(handle.fileno())
    return {"sha256": stream.digest.hexdigest(), "bytes": stream.bytes}


class DigestingFile:
    """A file that hashes what ``torch.save`` streams into it, block by block."""

    def __init__(self, handle: io.BufferedWriter) -> None:
        self.handle, self.digest, self.bytes = handle, hashlib.sha256(), 0
        self.error: OSError | None = None  # the first write that failed (torch replaces it with its own error)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), STREAM_BLOCK):
            block = view[start : start + STREAM_BLOCK]
            self.digest.update(block)
            try:
                self.handle.write(block)
            except OSError as error:
                self.error = self.error or error
                raise
            release_pages(block)
        self.bytes += len(view)
        return len(view)

    def flush(self) -> None:
        self.handle.flush()


def mismatch(file_path: Path, size: int, entry: Any) -> StateError:
    expected = entry.get("bytes") if isinstance(entry, dict) else "?"
    return StateError(
        f"state file {str(file_path)!r} does not match its manifest checksum "
        f"({size} bytes on disk, {expected} expected): it was modified or truncated"
    )


def mapped_payload(
    version: FolderVersion, file_path: Path, entry: Any, map_location: str | torch.device
) -> dict[str, Any]:
    """A large payload (a big memory's rows): hashed from its pinned descriptor block by block,
    then loaded memory-mapped from that same descriptor, so it is never whole in RAM. The bytes
    hashed are the bytes loaded as long as nobody writes into a committed version's file, which
    no writer does (every writer builds a new folder); the checks are those of a small payload."""
    fd = version.descriptor(file_path.name)
    size = os.fstat(fd).st_size
    digest, offset = hashlib.sha256(), 0
    while offset < size:
        block = os.pread(fd, min(STREAM_BLOCK, size - offset), offset)
        if not block:
            break
        digest.update(block)
        offset += len(block)
    if not isinstance(entry, dict) or entry.get("bytes") != size or digest.hexdigest() != entry.get("sha256"):
        raise mismatch(file_path, size, entry)
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
        check_archive(mapped, str(file_path))
    try:
        payload = torch.load(f"{_FD_PATHS}/{fd}", map_location=map_location, weights_only=True, mmap=True)
    except Exception as error:  # an unpickler refusal or a corrupt archive
        raise StateError(f"state file {str(file_path)!r} could not be read safely: {error}") from error
    if not isinstance(payload, dict):
        raise StateError(f"state file {str(file_path)!r} holds {type(payload).__name__}, expected a dict")
    check_declared(payload, size, str(file_path), memory=file_path.name == "memory.pt")
    return payload
