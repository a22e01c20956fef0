"""Ctrl-C and SIGTERM around a commit: never splitting it, and always saying whether it happened.

A commit (the rename of a new state folder into place, or the exchange of an in-place update and
the move of the old state to its rollback copy) runs inside a :class:`CommitGuard`: from the moment
it starts, SIGINT and SIGTERM are held back, and they are delivered once the commit and its
bookkeeping are over. A held-back SIGINT then surfaces as :class:`UpdateInterrupted`, a
``KeyboardInterrupt`` whose ``committed`` says whether the new state is in place; a held-back
SIGTERM is re-raised with the handler the program had (by default it then ends the process, after
the commit). ``ModelUpdater.update`` raises every interrupt as :class:`UpdateInterrupted`: it
records whether this call committed while the signals are held, so an interrupt that arrives after
the commit (during its last bookkeeping or on the way out) also says ``committed=True``.

Python runs signal handlers in the main thread only. In another thread the guard installs nothing:
a signal cannot interrupt that thread's commit there (the main thread receives it), and a process
killed before the commit ends is recovered from the file system like a SIGKILL
(:func:`retentive.state.inplace.recover`).

Lightning turns a Ctrl-C during ``Trainer.fit`` into ``SystemExit(1)`` (its
``_call_and_handle_interrupt``) and leaves SIGINT ignored afterwards; :func:`keyboard_interrupts`
turns that back into a ``KeyboardInterrupt`` and restores the SIGINT handler.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UpdateInterrupted(KeyboardInterrupt):
    """A Ctrl-C that stopped an update or a commit; ``committed`` says whether the new state is in
    place (the message names the folder), ``result`` is what the commit returned where it has a
    result to hand on (a publish: the pointer it committed)."""

    def __init__(self, message: str, committed: bool, result: Any = None) -> None:
        super().__init__(message)
        self.committed = committed
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def raises_keyboard_interrupt(handler: Any) -> bool:
    """Whether a SIGINT handler stands in for Python's default one (marked with this attribute)."""
    return bool(getattr(handler, "raises_keyboard_interrupt", False))


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class CommitGuard:
    """Holds SIGINT and SIGTERM back between :meth:`start` and :meth:`stop`; :meth:`deliver` then
    raises or re-raises what was held. ``start`` is idempotent, so a commit step may start a guard
    that its caller stops later (the caller's bookkeeping stays inside the guarded stretch)."""

    def __init__(self) -> None:
        self.held: list[int] = []
        self._previous: dict[int, Any] = {}  # while active: the handlers replaced
        self._restored: dict[int, Any] = {}  # once stopped: the handlers put back

    @property
    def active(self) -> bool:
        return bool(self._previous)

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        self.held.append(signum)

    def start(self) -> None:
        if self.active or not in_main_thread():
            return
        for signum in HELD_SIGNALS:
            previous = signal.getsignal(signum)
            if previous is None:  # installed outside Python: leave it alone
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._hold)

    def stop(self) -> None:
        if not self.active:
            return
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        self._restored = previous

    def deliver(self, committed: bool, message: str, result: Any = None) -> None:
        """Act on the first signal held (stopping the guard first): SIGINT under Python's default
        handler raises :class:`UpdateInterrupted` with ``message``; any other is re-raised to the
        handler the program had. Nothing happens when no signal came."""
        if self.active:
            self.stop()
        if not self.held:
            return
        signum = self.held[0]
        self.held = []
        handler = self._restored.get(signum)
        if signum == signal.SIGINT and (handler is signal.default_int_handler or raises_keyboard_interrupt(handler)):
            raise UpdateInterrupted(message, committed, result)
        signal.raise_signal(signum)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            self.stop()


@contextlib.contextmanager
def keyboard_interrupts(
    uncommitted: str | None = None,
    committed: str | None = None,
    has_committed: Callable[[], bool] = lambda: False,
) -> Iterator[None]:
    """Inside: Lightning's ``SystemExit`` for a Ctrl-C during a fit becomes a ``KeyboardInterrupt``
    again, and SIGINT ignored by Lightning after one is handled by Python again. With the messages,
    every plain ``KeyboardInterrupt`` leaving the block becomes :class:`UpdateInterrupted`:
    ``has_committed()`` (read when it leaves, so an interrupt after the commit says so) chooses
    ``committed`` or ``uncommitted``."""
    handler = signal.getsignal(signal.SIGINT) if in_main_thread() else None
    try:
        yield
    except UpdateInterrupted:
        raise
    except (KeyboardInterrupt, SystemExit) as error:
        if isinstance(error, SystemExit) and not isinstance(error.__context__, KeyboardInterrupt):
            raise
        done = has_committed()
        message = committed if done else uncommitted
        if message is None:
            raise KeyboardInterrupt() from None
        raise UpdateInterrupted(message, committed=done) from None
    finally:
        if handler is not None and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # Lightning's, after a Ctrl-C
            signal.signal(signal.SIGINT, handler)


def ignore_sigint() -> Callable[[], None]:
    """Ignore SIGINT from now on (at the system level, so also while the interpreter exits), in the
    main thread; return what puts the previous handler back. A command uses it once its commit is
    done, so that a late Ctrl-C cannot turn a committed update's exit status into "interrupted"."""
    if not in_main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    return restore
