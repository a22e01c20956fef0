"""What the tests' local servers (moto's S3, MLflow's tracking server) share: a free port, and a
wait until the started process answers."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answers(url: str, process: subprocess.Popen, name: str, timeout: float, log: Path | None = None) -> None:
    """Return once ``url`` answers; raise, with the end of the server's ``log`` if any, when the
    process exits first or ``timeout`` seconds pass."""
    tail = lambda: f":\n{log.read_text()[-3000:]}" if log is not None and log.exists() else ""  # noqa: E731
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}{tail()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer at {url} within {timeout} s{tail()}")
