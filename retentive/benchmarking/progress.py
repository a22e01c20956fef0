"""A progress display for long benchmarks: one line per update, with an estimate of the time left.

On a terminal the current run's line is rewritten in place; in a log file every update is one
line. The estimate assumes the remaining updates cost what the finished ones cost on average.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Counts updates over the whole benchmark (``total_updates``) and reports each one."""

    def __init__(self, total_updates: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = max(1, int(total_updates))
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0
        self.started = time.perf_counter()
        self.label = ""
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def start_run(self, label: str) -> None:
        self.label = label

    def update_done(self, chunk: int, num_chunks: int, seconds: float, accuracy: float) -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * (self.total - self.done)
        line = (
            f"[{self.done:>4}/{self.total}] {self.label} | chunk {chunk + 1}/{num_chunks} "
            f"| update {seconds:5.1f} s | acc. on seen chunks {100 * accuracy:5.1f}% "
            f"| elapsed {_clock(elapsed)} | left ~{_clock(left)}"
        )
        end = "\n" if not self._tty or chunk + 1 == num_chunks else ""
        self.stream.write(("\r\x1b[2K" if self._tty else "") + line + end)
        self.stream.flush()

    def note(self, message: str) -> None:
        if self.enabled:
            self.stream.write(("\r\x1b[2K" if self._tty else "") + message + "\n")
            self.stream.flush()
