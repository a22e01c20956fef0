"""What every dataset reader shares: the cache folder, mirror lists, fetching a URL, atomic writes.

A file appears in the cache whole or not at all: it is written to a temporary file in the same
folder and renamed into place, so an interrupted fetch or decode never leaves a half file that a
later run would trust.
"""

from __future__ import annotations

import os
import sys
import tempfile
import urllib.request
from pathlib import Path


def cache_base() -> Path:
    """The download and decode cache: ``$RETENTIVE_CACHE`` or ``~/.cache/retentive``."""
    return Path(os.environ.get("RETENTIVE_CACHE") or Path.home() / ".cache" / "retentive")


def search_path(name: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where a reader looks for dataset ``name``, in order: ``root`` (``--data``);
    ``$RETENTIVE_DATA`` and ``$RETENTIVE_DATA/<name>``; the project's ``../shared/data/<name>``
    (beside the package's checkout, then beside the current folder); the cache's ``<name>``."""
    dirs: list[Path] = [Path(root)] if root is not None else []
    env = os.environ.get("RETENTIVE_DATA")
    if env:
        dirs.extend([Path(env), Path(env) / name])
    project = Path(__file__).resolve().parents[2]
    dirs.append(project.parent / "shared" / "data" / name)
    dirs.append(Path.cwd().parent / "shared" / "data" / name)
    dirs.append(cache_base() / name)
    return list(dict.fromkeys(dirs))


def mirror_list(env: str, defaults: tuple[str, ...]) -> tuple[str, ...]:
    """The base URLs to fetch from, in order: ``$env`` (comma-separated) or ``defaults``."""
    configured = [url.strip() for url in os.environ.get(env, "").split(",") if url.strip()]
    return tuple(configured) or defaults


def check_mirror(mirror: str, what: str) -> None:
    """Only http(s) and file URLs are fetched (``urlopen`` would follow other schemes too)."""
    if not mirror.startswith(("http://", "https://", "file://")):
        raise ValueError(f"{what} mirror {mirror!r} is not an http(s) or file URL")


def fetch_bytes(url: str, timeout: float, progress: bool) -> bytes:
    """The body at ``url``; with ``progress``, a progress bar on stderr while it arrives."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) mirrors only
        total = int(response.headers.get("Content-Length") or 0)
        chunks, received = [], 0
        while block := response.read(1 << 16):
            chunks.append(block)
            received += len(block)
            if progress and total:
                done = received * 30 // total
                print(
                    f"\r  {url.rsplit('/', 1)[-1]:<28} [{'#' * done}{'.' * (30 - done)}] {received / 2**20:5.1f} MB",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        if progress and total:
            print(file=sys.stderr, flush=True)
    return b"".join(chunks)


def atomic_write(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` through a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".part") as handle:
        handle.write(payload)
    os.replace(handle.name, path)
    return path
