"""Wall time and peak memory of one update.

Peak memory is the process's resident-set high-water mark (``VmHWM``), reset before the update
through ``/proc/self/clear_refs`` on Linux, so it is the peak *during* that update (model, memory,
data loader, Lightning, everything). Python's ``tracemalloc`` would miss tensor storage, which
torch allocates outside the Python allocator. Where the reset is unavailable the figure is the
process's lifetime peak (``scope == "process"``). On CUDA the device peak is reported as well.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from types import TracebackType

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # "5" resets the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """The process's resident-set high-water mark in bytes."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class Measure:
    """``with Measure() as m: ...`` then ``m.seconds``, ``m.peak_rss_bytes``, ``m.scope`` and
    ``m.peak_cuda_bytes`` (None without CUDA)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.peak_rss_bytes = 0
        self.peak_cuda_bytes: int | None = None
        self.scope = "update"
        self._start = 0.0

    def __enter__(self) -> Measure:
        self.scope = "update" if _reset_peak_rss() else "process"
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        self._start = time.perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.seconds = time.perf_counter() - self._start
        self.peak_rss_bytes = peak_rss_bytes()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.peak_cuda_bytes = int(torch.cuda.max_memory_allocated())
