"""The memory budget: how many bytes a memory may allocate on its device, checked before it does.

The budget is what the device has available now: on the CPU, the kernel's ``MemAvailable``
(lowered to the cgroup's limit minus its usage where one is set); on a CUDA device, its free
memory plus what PyTorch's allocator holds unused. A growth that would exceed it is refused with
:class:`MemoryBudgetError` naming the bytes needed and available, before anything is allocated
(on the CPU an allocation past it would more likely end in the kernel's OOM killer than in an
error); an allocation that fails anyway is reported the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from retentive.errors import MemoryBudgetError  # noqa: F401 - raised here, importable from here


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """The cgroup v2 limit minus usage, if this process runs under a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def available_bytes(device: torch.device | str) -> int | None:
    """The bytes ``device`` can allocate now; ``None`` where it cannot be told (then nothing is refused
    up front, and only an allocation that fails is reported)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free) + int(torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    known = [value for value in (_meminfo_available(), _cgroup_available()) if value is not None]
    if not known and hasattr(os, "sysconf"):
        with contextlib.suppress(ValueError, OSError):
            known.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return min(known) if known else None


def budget_error(needed: int, available: int | None, device: torch.device | str, what: str) -> MemoryBudgetError:
    """The one error for a memory that does not fit: ``what`` says what the bytes were for."""
    have = "an unknown number of" if available is None else f"{available:,}"
    return MemoryBudgetError(
        f"the replay memory needs {needed:,} bytes on {device} for {what}, but {have} bytes are available; "
        "lower memory_size, store inputs compactly (memory_input_dtype), or free memory"
    )


def fits(needed: int, device: torch.device) -> tuple[bool, int | None]:
    """Whether ``needed`` bytes fit the budget of ``device`` now, and the budget (``None``: unknown)."""
    available = available_bytes(device)
    return (available is None or needed <= available), available


def nbytes(tensor: Tensor) -> int:
    """The bytes ``tensor``'s elements take (what copying it allocates)."""
    return int(tensor.numel()) * tensor.element_size()


def _row_bytes(storage: Mapping[str, Tensor]) -> int:
    return sum(math.prod(value.shape[1:]) * value.element_size() for value in storage.values())


def _rows_text(rows: int, capacity: int, row_bytes: int) -> str:
    return f"{rows:,} of its memory_size={capacity:,} samples of {row_bytes:,} bytes each"


def check_growth(storage: Mapping[str, Tensor], rows: int, capacity: int, device: torch.device) -> None:
    """Refuse (:class:`MemoryBudgetError`) growing ``storage`` to ``rows`` rows when that does not fit
    ``device``'s budget now: growing allocates the new tensors whole before it frees the old ones."""
    have = min((int(value.shape[0]) for value in storage.values()), default=rows)
    if rows <= have:
        return
    row_bytes = _row_bytes(storage)
    ok, available = fits(rows * row_bytes, device)
    if not ok:
        raise budget_error(rows * row_bytes, available, device, _rows_text(rows, capacity, row_bytes))


def grown_storage(storage: Mapping[str, Tensor], rows: int, capacity: int, device: torch.device) -> dict[str, Tensor]:
    """``storage`` grown to ``max(rows, 2 * its rows)`` rows, capped at ``capacity`` (exactly ``rows``
    when doubling does not fit the budget), on each tensor's device and dtype, its rows copied and the
    new ones zero. ``storage`` itself is not changed; :class:`MemoryBudgetError` when ``rows`` do not fit.
    """
    have = min(int(value.shape[0]) for value in storage.values())
    row_bytes = _row_bytes(storage)
    target = min(capacity, max(rows, 2 * have))
    if not fits(target * row_bytes, device)[0]:
        target = rows
        check_growth(storage, rows, capacity, device)
    grown: dict[str, Tensor] = {}
    try:
        for key, value in storage.items():
            grown[key] = torch.zeros((target, *value.shape[1:]), dtype=value.dtype, device=value.device)
            grown[key][:have] = value[:have]
    except (RuntimeError, MemoryError) as error:  # torch.OutOfMemoryError is a RuntimeError
        if not isinstance(error, MemoryError) and "alloc" not in str(error) and "out of memory" not in str(error):
            raise
        grown.clear()
        available = available_bytes(device)
        raise budget_error(target * row_bytes, available, device, _rows_text(target, capacity, row_bytes)) from None
    return grown
