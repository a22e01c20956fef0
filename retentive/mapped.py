"""Memory-mapped files whose resident pages stay bounded: the rows of a disk-backed memory.

A :class:`MappedFile` is a file of fixed-size rows, mapped shared and seen as one tensor. It is
created in a scratch folder and unlinked at once: no other process can change or truncate it by
name, and the kernel frees its blocks when the last mapping closes, even after a crash. Its
blocks are reserved with ``posix_fallocate`` before they are used, so a full disk is a
:class:`~retentive.errors.MemoryBudgetError` then, never a ``SIGBUS`` when a page is first written.

Pages read or written through a shared file mapping count in the process's resident size until
they are unmapped; the kernel would reclaim them under pressure, but a process that touched a
3 GB file would show (and be charged) 3 GB. :meth:`MappedFile.release` hands the pages back
(``madvise(MADV_DONTNEED)``: for a shared file mapping this only drops the page-table entries, the
data stays in the file), and :func:`release_pages` does so for a buffer that lies inside a live
mapping, so that a writer streaming a mapped tensor into a file (the state writer) keeps the
resident size bounded too.
"""

from __future__ import annotations

import errno
import math
import mmap
import os
import shutil
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from retentive.errors import MemoryBudgetError

#: The live mappings by the address of their first byte (weak: a mapping leaves as it is freed).
_LIVE: dict[int, weakref.ref[mmap.mmap]] = {}
PAGE = mmap.PAGESIZE
#: Linux's MADV_PAGEOUT (5.4+), which Python's mmap module does not always name
_MADV_PAGEOUT = 21


def scratch_folder(directory: str | os.PathLike[str] | None) -> Path:
    """The folder scratch files go to (``None``: the system's temporary folder), created if needed."""
    folder = Path(tempfile.gettempdir() if directory is None else directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MemoryBudgetError(f"the memory folder {str(folder)!r} cannot be created: {error}") from error
    return folder


def disk_budget_error(needed: int, folder: Path, what: str, available: int | None = None) -> MemoryBudgetError:
    """The one error for rows that do not fit the disk under ``folder``."""
    have = "an unknown number of" if available is None else f"{available:,}"
    return MemoryBudgetError(
        f"the disk-backed replay memory needs {needed:,} bytes in {str(folder)!r} for {what}, but {have} bytes are "
        "free there; lower memory_size, store inputs compactly (memory_input_dtype), or set memory_dir to a "
        "folder on a larger disk"
    )


class MappedFile:
    """A private, unlinked scratch file of ``rows`` rows of ``shape`` and ``dtype``, mapped as
    :attr:`tensor` (shape ``(rows, *shape)``); :meth:`resize` grows it in place.

    Args:
        folder: where the file's blocks live (the disk whose space it takes).
        shape, dtype: one row.
        rows: the rows to reserve now.
        what: what the rows are for, in a budget error.
    """

    def __init__(self, folder: Path, shape: tuple[int, ...], dtype: torch.dtype, rows: int, what: str) -> None:
        self.folder, self.shape, self.dtype, self.what = folder, tuple(shape), dtype, what
        self.row_bytes = math.prod(self.shape) * torch.empty((), dtype=dtype).element_size()
        #: the most bytes of pages one row read or written at random makes resident
        self.row_pages = (-(-self.row_bytes // PAGE) + 1) * PAGE
        fd, path = tempfile.mkstemp(prefix="retentive-memory-", suffix=".rows", dir=folder)
        os.unlink(path)  # private from now on: nothing else can change or truncate it by name
        self.fd = fd
        self._closer = weakref.finalize(self, os.close, fd)
        self.rows = 0
        self._map: mmap.mmap | None = None
        self.tensor = torch.zeros((0, *self.shape), dtype=dtype)
        self.resize(rows)

    def resize(self, rows: int) -> None:
        """Hold ``rows`` rows (never fewer than now), their blocks reserved on disk first; the rows
        held keep their values, new ones are zero. :class:`MemoryBudgetError` if the disk is full."""
        if rows <= self.rows:
            return
        needed = rows * self.row_bytes
        free = shutil.disk_usage(self.folder).free
        if needed - self.rows * self.row_bytes > free:
            raise disk_budget_error(needed, self.folder, self.what, free)
        try:
            os.posix_fallocate(self.fd, 0, max(needed, 1))
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise disk_budget_error(needed, self.folder, self.what, free) from None
            raise
        self._map = _register(mmap.mmap(self.fd, max(needed, 1)))
        self._map.madvise(mmap.MADV_RANDOM)  # rows are read at random: no read-ahead or fault-around
        flat = torch.frombuffer(self._map, dtype=torch.uint8, count=needed)
        self.tensor = flat.view(self.dtype).view(rows, *self.shape)
        self.rows = rows

    def read_rows(self, at: Tensor, pin: bool = False) -> Tensor:
        """The rows ``at`` (a CPU index tensor), read with one positioned read each: no page of the
        file becomes resident here; ``pin``: into pinned memory, for a non-blocking copy to a GPU."""
        rows = torch.empty((int(at.numel()), *self.shape), dtype=self.dtype, pin_memory=pin)
        view, size = memoryview(rows.view(-1).view(torch.uint8).numpy()), self.row_bytes  # type: ignore[arg-type]
        for i, row in enumerate(at.tolist()):
            if os.preadv(self.fd, [view[i * size : (i + 1) * size]], row * size) != size:
                raise OSError(errno.EIO, f"the memory file ended before row {row}")
        return rows

    def write_rows(self, at: Tensor, rows: Tensor) -> None:
        """Store ``rows`` in the slots ``at`` (in order: a slot written twice keeps the last row)."""
        data = rows.to(self.dtype).contiguous()
        view, size = memoryview(data.view(-1).view(torch.uint8).numpy()), self.row_bytes  # type: ignore[arg-type]
        first, n = (int(at[0]), int(at.numel())) if at.numel() else (0, 0)
        if n > 1 and torch.equal(at, torch.arange(first, first + n, dtype=at.dtype)):  # a run of slots (filling)
            if os.pwrite(self.fd, view, first * size) != n * size:
                raise OSError(errno.EIO, f"the memory file took fewer than {n} rows at row {first}")
            return
        for i, row in enumerate(at.tolist()):
            os.pwrite(self.fd, view[i * size : (i + 1) * size], row * size)

    def release(self) -> None:
        """Hand every resident page back to the kernel (the data stays in the file)."""
        if self._map is not None:
            self._map.madvise(mmap.MADV_DONTNEED)

    def copy(self, rows: int, what: str) -> MappedFile:
        """A new scratch file holding this file's first ``rows`` rows, copied by the kernel (no page
        of either file becomes resident here)."""
        other = MappedFile(self.folder, self.shape, self.dtype, rows, what)
        nbytes, offset = rows * self.row_bytes, 0
        while offset < nbytes:
            done = os.copy_file_range(self.fd, other.fd, nbytes - offset, offset, offset)
            if done == 0:
                raise OSError(errno.EIO, f"the memory file ended after {offset} of {nbytes} bytes")
            offset += done
        return other


def _address(buffer: object) -> int:
    """The address of ``buffer``'s first byte."""
    return int(np.frombuffer(buffer, dtype=np.uint8, count=1).ctypes.data)  # type: ignore[call-overload]


def _register(mapping: mmap.mmap) -> mmap.mmap:
    address = _address(mapping)
    _LIVE[address] = weakref.ref(mapping, lambda _: _LIVE.pop(address, None))
    return mapping


def release_pages(view: memoryview) -> None:
    """Hand back the whole pages of ``view`` if it lies in a live :class:`MappedFile` mapping; any
    other buffer (ordinary memory, whose pages hold the only copy) is left alone."""
    if not _LIVE or view.nbytes == 0:
        return
    address = _address(view)
    for base, ref in list(_LIVE.items()):
        mapping = ref()
        if mapping is not None and base <= address and address + view.nbytes <= base + len(mapping):
            start = (address - base) // PAGE * PAGE
            mapping.madvise(mmap.MADV_DONTNEED, start, address - base + view.nbytes - start)
            return


def hint_release(tensor: Tensor) -> None:
    """Ask the kernel to reclaim ``tensor``'s whole pages (``MADV_PAGEOUT``): read-once rows from a
    memory-mapped state file leave the resident size; a hint only, never a change of content."""
    if tensor.numel() == 0 or tensor.device.type != "cpu" or not sys.platform.startswith("linux"):
        return
    address, length = tensor.data_ptr(), tensor.numel() * tensor.element_size()
    start = -(-address // PAGE) * PAGE
    stop = (address + length) // PAGE * PAGE
    if stop > start:
        _madvise(start, stop - start, getattr(mmap, "MADV_PAGEOUT", _MADV_PAGEOUT))


def _madvise(address: int, length: int, advice: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(length), ctypes.c_int(advice))  # a hint: errors ignored


def holds_mapped_rows(value: object) -> bool:
    """Whether ``value`` (a payload: nested dicts, lists and tensors) holds a tensor whose data lies
    in a live :class:`MappedFile` mapping."""
    if torch.is_tensor(value):
        if value.device.type != "cpu" or value.numel() == 0:
            return False
        address = value.data_ptr()
        return any((m := ref()) is not None and base <= address < base + len(m) for base, ref in list(_LIVE.items()))
    if isinstance(value, dict):
        return any(holds_mapped_rows(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(holds_mapped_rows(item) for item in value)
    return False
