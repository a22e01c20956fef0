"""Where a watch service finds its chunks: a local folder, or a prefix at a URL (``s3://bucket/x``).

A chunk is one file directly in the source (sub-folders are not looked into); names starting
with ``.`` are skipped, so a producer can write ``.day3.npz.tmp`` and rename it into place (what
:func:`retentive.data.files.write_chunk` does) and the service never sees half a file. A local
file is also left alone until it is ``settle`` seconds old, for producers that write in place.
Every other file is a chunk: one that is not a readable chunk file (:mod:`retentive.data.files`)
is quarantined by the service, not skipped in silence.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from retentive.errors import StateError
from retentive.state.remote.filesystem import explain, is_url, local_path, open_url


class ChunkSource:
    """The chunk files under ``location``, listed in name order and fetched one at a time."""

    def __init__(self, location: str | os.PathLike[str], settle: float = 1.0) -> None:
        text = os.fspath(location)
        self.url = is_url(text)
        self.location = text.rstrip("/") if self.url else str(local_path(text))
        self.settle = settle
        if self.url:
            self._fs, self._root = open_url(self.location)
            self._check_reachable()
        elif not Path(self.location).is_dir():
            what = "is not a folder" if Path(self.location).exists() else "does not exist"
            raise StateError(f"the source {self.location!r} {what}; give the folder (or s3:// prefix) chunks arrive in")

    def _check_reachable(self) -> None:
        bucket = self._root.split("/", 1)[0]
        try:
            found = self._fs.exists(bucket)
        except Exception as error:
            raise StateError(f"the source {self.location!r} cannot be reached: {explain(error)}") from error
        if not found:
            raise StateError(f"the source {self.location!r} does not exist (no bucket {bucket!r})")

    def names(self) -> list[str]:
        """The chunk files there now, by name (hidden and, locally, unsettled files left out)."""
        if not self.url:
            cutoff = time.time() - self.settle
            entries = os.scandir(self.location)
            return sorted(
                e.name for e in entries if not e.name.startswith(".") and e.is_file() and e.stat().st_mtime <= cutoff
            )
        self._fs.invalidate_cache(self._root)
        try:
            listed = self._fs.ls(self._root, detail=True)
        except FileNotFoundError:
            return []
        except Exception as error:
            raise StateError(f"the source {self.location!r} cannot be listed: {explain(error)}") from error
        names = (entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in listed if entry.get("type") == "file")
        return sorted(name for name in names if not name.startswith("."))

    def fetch(self, name: str, workdir: Path) -> tuple[Path, str]:
        """A local path holding chunk ``name`` and the sha256 of its bytes (a URL's is downloaded);
        FileNotFoundError when it has gone since it was listed."""
        if self.url:
            path = workdir / name
            try:
                self._fs.get_file(f"{self._root}/{name}", str(path))
            except FileNotFoundError:
                raise
            except Exception as error:
                raise StateError(f"{self.location}/{name} cannot be downloaded: {explain(error)}") from error
        else:
            path = Path(self.location) / name
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return path, digest.hexdigest()

    def where(self, name: str) -> str:
        return f"{self.location}/{name}"
