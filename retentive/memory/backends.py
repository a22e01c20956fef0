"""Where a memory's rows live: the backends of :class:`~retentive.memory.storage.TensorStorage`.

Every backend holds one tensor per storage key, so everything above the storage (the policies,
the exchange under data parallelism, the state format, extra keys such as sample ids) works the
same on each; they differ only in how the rows are allocated and where they reside:

- ``"grown"`` (the default): on the training device, allocated as the memory fills (doubling,
  capped at the capacity), each growth checked against the device's budget first; a large
  ``memory_size`` costs only the rows filled.
- ``"tensor"``: on the training device, the whole capacity allocated (and budget-checked) when the
  memory is laid out: no growth copies later, and a memory that cannot fit is refused before the
  first step rather than when it fills.
- ``"disk"``: in memory-mapped scratch files under ``memory_dir`` (:mod:`retentive.mapped`), on
  the CPU whatever the training device, grown like ``"grown"`` on disk; the pages an update reads
  or writes are handed back every :data:`RESIDENT_WINDOW` bytes, so the resident size stays
  bounded however large the capacity. Sampled rows reach a GPU through pinned memory.

A state saved with any backend loads with any other (one format, :mod:`retentive.memory.persistence`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from retentive.mapped import MappedFile, disk_budget_error, hint_release, scratch_folder
from retentive.memory.budget import check_growth, fits, grown_storage

BACKENDS = ("grown", "tensor", "disk")
DEFAULT_BACKEND = "grown"
#: the bytes a disk-backed memory reads and writes before it hands its resident pages back
RESIDENT_WINDOW = 64 << 20
#: the rows a restore or snapshot copies at a time hold about this many bytes
COPY_BLOCK = 16 << 20


class GrownRows:
    """Rows on the training device, allocated as the memory fills (``"grown"``)."""

    name = "grown"

    def storage_device(self, device: torch.device) -> torch.device:
        return device

    def first_rows(self, capacity: int) -> int:
        """The rows to hold as soon as the memory is laid out (or restored)."""
        return 0

    def new(self, key: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """An empty (0-row) tensor for ``key``; :meth:`grow` gives it rows."""
        return torch.zeros((0, *shape), dtype=dtype, device=device)

    def grow(self, storage: Mapping[str, Tensor], rows: int, capacity: int, device: torch.device) -> dict[str, Tensor]:
        return grown_storage(storage, rows, capacity, device)

    def check_room(self, storage: Mapping[str, Tensor], rows: int, capacity: int, device: torch.device) -> None:
        check_growth(storage, rows, capacity, device)

    def fits(self, needed: int, device: torch.device) -> tuple[bool, int | None, str]:
        """Whether ``needed`` bytes of rows fit, the budget, and where it is."""
        ok, available = fits(needed, device)
        return ok, available, str(device)

    def accessed(self, rows: int) -> None:
        """``rows`` rows were read or written (a disk-backed memory bounds its resident pages)."""

    def read(self, key: str, stored: Tensor, at: Tensor | slice, pin: bool = False) -> Tensor:
        """The rows ``at`` of ``key``, whose storage is ``stored`` (``pin``: for a GPU, in pinned memory)."""
        return stored[at]

    def write(self, key: str, stored: Tensor, at: Tensor, rows: Tensor) -> None:
        """Store ``rows`` (encoded) in the slots ``at`` of ``key``."""
        stored[at] = rows

    def snapshot(self, key: str, stored: Tensor, rows: int) -> Tensor:
        """An independent copy of the first ``rows`` rows, on the CPU (a state's)."""
        return stored[:rows].detach().cpu().contiguous().clone()

    def compact(self, storage: Mapping[str, Tensor], where: Tensor, size: int) -> dict[str, Tensor]:
        """Only the filled rows ``where`` (ascending) of the first ``size``, in slots ``0..kept-1``,
        with nothing of the others left in the storage: copied anew."""
        return {key: value[:size][where].clone() for key, value in storage.items()}


class PreallocatedRows(GrownRows):
    """Rows on the training device, the whole capacity allocated at layout (``"tensor"``)."""

    name = "tensor"

    def first_rows(self, capacity: int) -> int:
        return capacity

    def compact(self, storage: Mapping[str, Tensor], where: Tensor, size: int) -> dict[str, Tensor]:
        """In place (the capacity stays allocated): :func:`compact_in_place`."""
        return compact_in_place(storage, where, size, self)


class DiskRows(GrownRows):
    """Rows in memory-mapped scratch files under ``directory``, resident pages bounded (``"disk"``).

    Args:
        directory: the scratch folder (``None``: the system's temporary folder); the files are
            unlinked as soon as they are created, so nothing is left there after the process.
    """

    name = "disk"

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = directory
        self.files: dict[str, MappedFile] = {}
        self._touched = 0
        self._row_bytes = 0
        self._row_pages = 0

    @property
    def folder(self) -> Path:
        return scratch_folder(self.directory)

    def storage_device(self, device: torch.device) -> torch.device:
        return torch.device("cpu")

    def new(self, key: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        self.files[key] = MappedFile(self.folder, shape, dtype, 0, f"the memory key {key!r}")
        self._row_bytes = sum(file.row_bytes for file in self.files.values())
        self._row_pages = sum(file.row_pages for file in self.files.values())
        return self.files[key].tensor

    def grow(self, storage: Mapping[str, Tensor], rows: int, capacity: int, device: torch.device) -> dict[str, Tensor]:
        have = min(int(value.shape[0]) for value in storage.values())
        target = min(capacity, max(rows, 2 * have))
        if not self.fits((target - have) * self._row_bytes, device)[0]:
            target = rows
            self.check_room(storage, rows, capacity, device)
        for key in storage:
            self.files[key].resize(target)
        return {key: self.files[key].tensor for key in storage}

    def check_room(self, storage: Mapping[str, Tensor], rows: int, capacity: int, device: torch.device) -> None:
        have = min((int(value.shape[0]) for value in storage.values()), default=rows)
        needed = (rows - have) * self._row_bytes
        ok, available, _ = self.fits(needed, device)
        if rows > have and not ok:
            what = f"{rows:,} of its memory_size={capacity:,} samples of {self._row_bytes:,} bytes each"
            raise disk_budget_error(rows * self._row_bytes, self.folder, what, available)

    def fits(self, needed: int, device: torch.device) -> tuple[bool, int | None, str]:
        free = shutil.disk_usage(self.folder).free
        return needed <= free, free, str(self.folder)

    def read(self, key: str, stored: Tensor, at: Tensor | slice, pin: bool = False) -> Tensor:
        """Rows drawn at random are read with positioned reads (a page fault per row costs far
        more, and leaves the page resident); a range of rows through the mapping."""
        if isinstance(at, slice):
            self.accessed(len(range(*at.indices(int(stored.shape[0])))))
            return stored[at]
        return self.files[key].read_rows(at, pin)

    def write(self, key: str, stored: Tensor, at: Tensor, rows: Tensor) -> None:
        self.files[key].write_rows(at, rows)

    def accessed(self, rows: int) -> None:
        self._touched += rows * self._row_pages
        if self._touched >= RESIDENT_WINDOW:
            self.release()

    def release(self) -> None:
        """Hand every resident page of the memory's files back to the kernel."""
        self._touched = 0
        for file in self.files.values():
            file.release()

    def compact(self, storage: Mapping[str, Tensor], where: Tensor, size: int) -> dict[str, Tensor]:
        """In the files themselves: :func:`compact_in_place`."""
        return compact_in_place(storage, where, size, self)

    def snapshot(self, key: str, stored: Tensor, rows: int) -> Tensor:
        """A copy in a new scratch file, made by the kernel: no row passes through this process."""
        return self.files[key].copy(rows, f"a snapshot of the memory key {key!r}").tensor


def make_backend(name: str, directory: str | os.PathLike[str] | None = None) -> GrownRows:
    """The backend called ``name`` (one of :data:`BACKENDS`); ``directory`` is the disk's scratch folder."""
    if name == "grown":
        return GrownRows()
    if name == "tensor":
        return PreallocatedRows()
    if name == "disk":
        return DiskRows(directory)
    raise ValueError(f"memory_backend must be one of {list(BACKENDS)}, got {name!r}")


def compact_in_place(storage: Mapping[str, Tensor], where: Tensor, size: int, backend: GrownRows) -> dict[str, Tensor]:
    """Move the rows ``where`` (ascending) of the first ``size`` up to slots ``0..kept-1``, block by
    block (a row only ever moves to a lower slot, so no block overwrites a row a later one reads),
    then zero the slots ``kept..size-1``: nothing of a removed row is left in the storage."""
    kept = int(where.numel())
    for stored in storage.values():
        row_bytes = max(1, stored[:1].numel() * stored.element_size())
        step = max(1, COPY_BLOCK // row_bytes)
        for start in range(0, kept, step):
            block = where[start : start + step]
            stored[start : start + int(block.numel())] = stored[block]  # gathered whole before the write
            backend.accessed(2 * int(block.numel()))
        stored[kept:size] = 0
        backend.accessed(size - kept)
    return dict(storage)


def copy_rows(target: Tensor, saved: Tensor, convert: Callable[[Tensor], Tensor], backend: GrownRows) -> None:
    """Copy ``saved`` into ``target``'s first rows block by block (``convert`` maps a block to the
    stored encoding), so that neither side is ever whole in memory twice; read-once pages of the
    saved rows are handed back as they are copied."""
    rows = int(saved.shape[0])
    row_bytes = max(1, saved[:1].numel() * saved.element_size())
    step = max(1, COPY_BLOCK // row_bytes)
    for start in range(0, rows, step):
        block = saved[start : start + step]
        target[start : start + int(block.shape[0])] = convert(block)
        backend.accessed(int(block.shape[0]))
        if isinstance(backend, DiskRows):
            hint_release(block)
