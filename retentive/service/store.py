"""Small JSON documents kept in a model home beside its pointer: read with their identity, replaced
by compare-and-swap (the watch ledger), or simply overwritten (the status file).

The ledger says which chunks a watch service has finished; two services on one home would take
the same chunk twice, so every write is conditional on the document the writer read, the same
way the home's pointer is (:mod:`retentive.state.remote.pointer`): a local home renames a
temporary file over the document under the lock beside it; S3 applies a PUT carrying
``If-Match`` (or ``If-None-Match: *`` for the first one). A writer that lost the race gets
:class:`~retentive.errors.StateConflictError` and nothing is written. SIGINT and SIGTERM are held
for the one write, so it happens whole or not at all.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retentive.errors import StateConflictError, StateError
from retentive.state.interrupts import CommitGuard
from retentive.state.remote.filesystem import explain, open_url
from retentive.state.remote.pointer import _get_s3, _is_local, _is_s3, _locked

#: the most bytes a document may take when read back (a ledger of ~100 000 chunks)
DOCUMENT_LIMIT = 64 << 20


@dataclass(frozen=True)
class Document:
    """A document as read: its parsed value, its exact bytes and the store's ETag (S3)."""

    data: dict[str, Any]
    raw: bytes
    etag: str | None = None


class JsonStore:
    """JSON documents under ``location`` (a local folder or an fsspec URL), by file name."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._fs, self._root = open_url(location)

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    def read(self, name: str) -> Document | None:
        """The document ``name`` (``None`` when there is none); a malformed one is a StateError."""
        path = self._path(name)
        try:
            raw, etag = _get_s3(self._fs, path) if _is_s3(self._fs) else (self._fs.cat_file(path), None)
        except FileNotFoundError:
            return None
        except Exception as error:
            raise StateError(f"{self.location}/{name} cannot be read: {explain(error)}") from error
        if len(raw) > DOCUMENT_LIMIT:
            raise StateError(f"{self.location}/{name} takes {len(raw)} bytes, more than {DOCUMENT_LIMIT}")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise StateError(
                f"{self.location}/{name} is not a JSON object; it was damaged or written by another program"
            )
        return Document(data, raw, etag)

    def replace(self, name: str, data: dict[str, Any], expected: Document | None) -> Document:
        """Write ``data`` as ``name`` if the store still holds ``expected`` (``None``: no document);
        else :class:`StateConflictError`. Signals are held for the write."""
        raw = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
        guard = CommitGuard()
        with guard:
            written = self._replace(name, data, raw, expected)
        guard.deliver(True, f"interrupted after {self.location}/{name} was written")
        return written

    def _replace(self, name: str, data: dict[str, Any], raw: bytes, expected: Document | None) -> Document:
        path = self._path(name)
        if _is_local(self._fs):
            lock = _locked(Path(path))
            try:
                self._check_unchanged(name, expected)
                _write_local(Path(path), raw)
            finally:
                lock.release()
            return Document(data, raw)
        if not _is_s3(self._fs):  # compare, then write: no atomic condition on other stores
            self._check_unchanged(name, expected)
            self._fs.pipe_file(path, raw)
            return Document(data, raw)
        bucket, key, _ = self._fs.split_path(path)
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected.etag}
        try:
            response = self._fs.call_s3("put_object", Bucket=bucket, Key=key, Body=raw, **condition)
        except Exception as error:  # refused (412), or lost on the way: what does the store hold now?
            now = self.read(name)
            if now is not None and now.raw == raw:
                return now
            self._check_unchanged(name, expected, now)
            raise StateError(f"writing {self.location}/{name} failed: {explain(error)}") from error
        self._fs.invalidate_cache(path)
        return Document(data, raw, response.get("ETag"))

    def _check_unchanged(self, name: str, expected: Document | None, *now_read: Document | None) -> None:
        now = now_read[0] if now_read else self.read(name)
        if (now is None) != (expected is None) or (
            now is not None and expected is not None and now.raw != expected.raw
        ):
            raise StateConflictError(
                f"{self.location}/{name} changed since it was read: another watch service writes this home; "
                "nothing was written (stop the other service, then start this one again)"
            )

    def overwrite(self, name: str, data: dict[str, Any]) -> None:
        """Write ``data`` as ``name`` whole (a reader sees the old or the new document), unconditionally."""
        raw = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
        try:
            if _is_local(self._fs):
                _write_local(Path(self._path(name)), raw)
            else:
                self._fs.pipe_file(self._path(name), raw)
        except Exception as error:
            raise StateError(f"writing {self.location}/{name} failed: {explain(error)}") from error


def _write_local(path: Path, raw: bytes) -> None:
    """Write beside, flush, rename over ``path``: atomic on a POSIX file system."""
    from retentive.state.format import _fsync_dir

    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}"
    try:
        with open(temporary, "xb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    finally:
        temporary.unlink(missing_ok=True)
