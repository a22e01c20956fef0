"""The memory budget: how many bytes a memory may allocate on its device, checked before it does.

The budget is what the device has available now: on the CPU, the kernel's ``MemAvailable``
(lowered to the cgroup's limit minus its usage where one is set); on a CUDA device, its free
memory plus what PyTorch's allocator holds unused. A growth that would exceed it is refused with
:class:`MemoryBudgetError` naming the bytes needed and available, before anything is allocated
(on the CPU an allocation past it would more likely end in the kernel's OOM killer than in an
error); an allocation that fails anyway is reported the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from retentive.errors import RetentiveError


class MemoryBudgetError(RetentiveError, MemoryError):
    """The replay memory needs more bytes than its device has available; nothing was changed."""


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
        try:
            known.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return min(known) if known else None


def budget_error(needed: int, available: int | None, device: torch.device, what: str) -> MemoryBudgetError:
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
