"""A real MLflow tracking server for the registry tests: ``mlflow server`` on 127.0.0.1 with a
SQLite backend store and proxied artifacts (clients upload through the server, as they do to a
remote one), in its own process group on a free port, waited for and torn down."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(uri: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """The server answers /health (its app import alone takes tens of seconds on a busy 2-core machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"mlflow server did not answer at {uri} within {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """Start the server with its store under ``folder``; yield its URI; stop it and its workers."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_up(uri, process, log)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> Iterator[str]:
    """The URI of a fresh tracking server, one per test module."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri
