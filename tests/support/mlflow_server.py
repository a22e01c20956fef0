"""A real MLflow tracking server for the registry tests: ``mlflow server`` on 127.0.0.1 with a
SQLite backend store and proxied artifacts (clients upload through the server, as they do to a
remote one), in its own process group on a free port, waited for and torn down."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import free_port, wait_until_answers


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
        wait_until_answers(f"{uri}/health", process, "mlflow server", timeout=180, log=log)  # tens of s under load
        yield uri
    finally:  # the store is thrown away with the folder: no graceful shutdown to wait for
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def mlflow_uri(mlflow_session_uri: str) -> str:
    """The URI of the session's tracking server (tests/conftest.py starts it once: its start-up
    takes seconds). Each test registers models under names of its own, never assuming an empty store."""
    return mlflow_session_uri
