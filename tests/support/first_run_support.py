"""A fresh clone and a local MNIST mirror: what a newcomer's machine looks like (used by
tests/e2e/test_readme_first_command.py and benchmarks/first_run.py)."""

from __future__ import annotations

import contextlib
import functools
import gzip
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request log on stderr
        pass


def build_mirror(target: Path) -> Path:
    """A mirror's layout (``<name>.gz`` for each idx file) from the MNIST the library finds."""
    from retentive.data.mnist import FILES, ensure_mnist, locate_mnist

    ensure_mnist()
    source = locate_mnist()
    assert source is not None
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (source / f"{name}.gz").is_file():
            shutil.copyfile(source / f"{name}.gz", target / f"{name}.gz")
        else:
            (target / f"{name}.gz").write_bytes(gzip.compress((source / name).read_bytes(), compresslevel=1))
    return target


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 that nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def fresh_clone(parent: Path) -> Path:
    """``git clone`` of this repository into ``parent/retentive``: no ``../shared`` beside it, no venv."""
    if not (ROOT / ".git").exists():
        raise FileNotFoundError(f"{ROOT} is not a git checkout")
    clone = parent / "retentive"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    assert not (parent / "shared").exists()
    return clone


def readme_first_command(clone: Path) -> list[str]:
    """The arguments of ``retentive`` in the README's first command (``... && .venv/bin/retentive demo``)."""
    text = (clone / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None, "the README has no bash block"
    first = block.group(1).strip().splitlines()[0].split("#")[0]
    match = re.search(r"(?:\.venv/bin/)?retentive ([^&;|]*)$", first.strip())
    assert match is not None, f"the README's first command runs no retentive command: {first!r}"
    return match.group(1).split()


def newcomer_env(home: Path, mirror: str) -> dict[str, str]:
    """A machine with nothing cached: a new home and cache, MNIST only from ``mirror``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RETENTIVE_")}
    env.update(
        HOME=str(home),
        RETENTIVE_CACHE=str(home / ".cache" / "retentive"),
        RETENTIVE_MNIST_MIRROR=mirror,
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def run_retentive(
    clone: Path, args: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess:
    """``retentive ARGS`` from the clone's own code (its folder first on the path), in the clone."""
    return subprocess.run(
        [sys.executable, "-m", "retentive.cli", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
