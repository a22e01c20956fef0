"""Ctrl-C during a fit, taken at the next step boundary (a callback of the updater's Trainer).

A KeyboardInterrupt raised wherever the main thread happens to be can land inside a logger's
writer: TensorBoard's event writer then never stops, and Lightning's clean-up after the interrupt
waits on it forever (observed with ``retentive update`` and its default TensorBoard logger). While
a fit runs, the first SIGINT is therefore only recorded, and raised as ``KeyboardInterrupt`` by
:class:`StepBoundaryInterrupts` at the next batch boundary (training or validation), or before the
state is written; a second SIGINT raises at once. Outside a fit, and where the program installed
its own SIGINT handler (or runs this in another thread), SIGINT behaves as usual.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytorch_lightning as pl

from retentive.state.interrupts import in_main_thread


class StepBoundaryInterrupts(pl.Callback):
    """Holds a first SIGINT while the Trainer runs and raises it at the next batch boundary."""

    def __init__(self) -> None:
        self.in_fit = False
        self.pending = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.in_fit and not self.pending:
            self.pending = True  # raised at the next boundary; a second Ctrl-C raises now
            return
        raise KeyboardInterrupt

    handle.raises_keyboard_interrupt = True  # type: ignore[attr-defined]  # a commit re-raises it as its own

    def check(self) -> None:
        """Raise the held SIGINT, if any (at a point where no writer is half-way)."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.in_fit = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.in_fit = False
        self.check()  # a Ctrl-C during the last step: raised before anything is written

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.in_fit = False

    def on_train_batch_end(self, *args: Any) -> None:
        self.check()

    def on_validation_batch_end(self, *args: Any) -> None:
        self.check()

    def on_train_epoch_end(self, *args: Any) -> None:
        self.check()


@contextlib.contextmanager
def interrupts_at_step_boundaries(callbacks: list[pl.Callback]) -> Iterator[StepBoundaryInterrupts | None]:
    """Inside: ``callbacks`` (the updater's, given to every Trainer it builds) holds a
    :class:`StepBoundaryInterrupts` and SIGINT goes to it; both are put back on exit. Yields the
    callback, or ``None`` where SIGINT is not Python's default (nothing is changed then)."""
    if not in_main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield None
        return
    boundary = StepBoundaryInterrupts()
    callbacks.append(boundary)
    signal.signal(signal.SIGINT, boundary.handle)
    try:
        yield boundary
    finally:
        if signal.getsignal(signal.SIGINT) in (boundary.handle, signal.SIG_IGN):  # SIG_IGN: Lightning's, after one
            signal.signal(signal.SIGINT, signal.default_int_handler)
        callbacks.remove(boundary)
