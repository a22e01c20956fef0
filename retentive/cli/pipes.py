"""A command whose output's reader went away (``retentive inspect S | head -1``) stops quietly.

Python turns SIGPIPE into :class:`BrokenPipeError`, raised by the next write or flush to stdout;
uncaught it prints a traceback, and again at interpreter exit when the buffered output is flushed.
:func:`closed_stdout` tells that case from another pipe or socket failing, and :func:`exit_quietly`
does what Python's docs recommend (https://docs.python.org/3/library/signal.html#note-on-sigpipe):
point stdout at devnull so nothing can raise again, and exit non-zero.
"""

from __future__ import annotations

import os
import select
import sys

#: the exit code when stdout's reader closed the pipe: what a shell reports for a writer stopped
#: by SIGPIPE (``yes | head -1`` under ``set -o pipefail``), 128 + 13
CLOSED_PIPE = 141


def closed_stdout() -> bool:
    """Whether stdout is a pipe whose reader has closed it (``poll`` reports an error on it), so a
    :class:`BrokenPipeError` came from our output and not from some other pipe or socket.
    Platforms without ``poll`` assume it did."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no file behind stdout: the error is not about it
        return False
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    try:
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except OSError:
        return False


def exit_quietly() -> int:
    """Point stdout at devnull (the flush at exit then cannot raise); return :data:`CLOSED_PIPE`."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return CLOSED_PIPE
