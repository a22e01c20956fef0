"""The pointer object of a remote state (``current.json``): read with the identity the store gives
it, validated, and replaced only while it still holds what the writer read (compare-and-swap).

    {"format": "retentive-remote-state", "version": ID, "manifest_sha256": ..., "extra": {...},
     "committed": ..., "commit": <unique id>, "previous": [{"version": ..., "manifest_sha256": ...,
     "extra": {...}, "committed": ...}, ...]}

``previous`` lists the versions committed before this one, newest first (what a rollback goes
back to, and what garbage collection keeps); ``commit`` makes every pointer written distinct, so a
writer recognises its own commit and a replaced pointer never looks like the one read. A model
home (:mod:`retentive.state.home`) adds ``challenger`` (a candidate a gate refused, with its
``report``) and ``rejected`` (earlier refused or rolled-back versions, newest first): versions kept
beside the current one, never served, each entry validated like the others.

How the swap is made conditional depends on the store:

- **S3** (s3fs): the PUT of the pointer carries ``If-Match: <ETag read>`` (or ``If-None-Match: *``
  where the writer read no pointer), so S3 applies it only if the pointer is still the one read;
  of two writers that read the same pointer, exactly one commits.
- **A local folder** (a model home on disk): the pointer is written to a temporary file, flushed,
  and renamed over ``current.json`` while the writer holds the lock beside it
  (:mod:`~retentive.state.locking`), after comparing it with the one read: atomic, and exclusive.
- **Any other fsspec filesystem** (``memory://``, ...): fsspec offers no conditional write that is
  known to be atomic there, so the pointer is read again and compared just before it is
  overwritten. That detects every commit that finished before this check, but not one that lands
  between the check and the write: two writers racing within that window are not excluded there.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retentive.errors import StateError, StateLockedError
from retentive.state.remote.filesystem import explain
from retentive.state.remote.names import POINTER, SHA256, extra_name, file_entry, version_id

POINTER_FORMAT = "retentive-remote-state"


@dataclass(frozen=True)
class Pointer:
    """A pointer as read: its fields, its exact bytes, and the store's ETag for it (S3; else ``None``)."""

    data: dict[str, Any]
    raw: bytes
    etag: str | None = None

    @property
    def version(self) -> str:
        return self.data["version"]

    @property
    def previous(self) -> list[dict[str, Any]]:
        return self.data.get("previous", [])

    @property
    def challenger(self) -> dict[str, Any] | None:
        """The candidate kept beside the current version with its gate report (a home's), if any."""
        return self.data.get("challenger")

    @property
    def rejected(self) -> list[dict[str, Any]]:
        """Earlier refused or rolled-back versions a home keeps, newest first."""
        return self.data.get("rejected", [])

    def entry(self) -> dict[str, Any]:
        """This pointer's version as an entry of a later pointer's ``previous`` list."""
        return {key: self.data[key] for key in ("version", "manifest_sha256", "extra", "committed") if key in self.data}


class PointerMoved(Exception):
    """The pointer is no longer the one the writer read; ``current`` is what it holds now."""

    def __init__(self, current: Pointer | None) -> None:
        super().__init__("the pointer moved")
        self.current = current


def _is_s3(fs: Any) -> bool:
    return callable(getattr(fs, "_call_s3", None)) and callable(getattr(fs, "split_path", None))


def _check_entry(entry: object, where: str) -> dict[str, Any]:
    """One version entry (the pointer itself or one of its ``previous``), every name validated."""
    if not isinstance(entry, dict):
        raise StateError(f"{where} is not an object: {entry!r}")
    version_id(entry.get("version"), where)
    sha = entry.get("manifest_sha256")
    if not isinstance(sha, str) or not SHA256.match(sha):
        raise StateError(f"{where} has manifest_sha256 {sha!r}; expected 64 hex digits")
    extra = entry.get("extra", {})
    if not isinstance(extra, dict):
        raise StateError(f"{where} has 'extra' {extra!r}; expected an object of file names")
    for name, value in extra.items():
        file_entry(value, f"{where} (extra file {extra_name(name, where)!r})")
    return entry


#: the largest gate report a pointer carries (JSON bytes): a report is a summary, not a data set
REPORT_LIMIT = 1 << 16


def check_report(report: object, where: str) -> dict[str, Any]:
    """A gate report: a JSON object of at most :data:`REPORT_LIMIT` bytes, else :class:`StateError`."""
    if not isinstance(report, dict):
        raise StateError(f"{where} has the report {report!r}; expected a JSON object")
    try:
        size = len(json.dumps(report, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as error:
        raise StateError(f"{where}: the report is not plain JSON ({error})") from None
    if size > REPORT_LIMIT:
        raise StateError(f"{where}: the report takes {size} bytes as JSON, more than {REPORT_LIMIT}")
    return report


def _check_kept(data: dict[str, Any], where: str) -> None:
    """A home's ``challenger`` and ``rejected`` entries: each a version entry with an optional report."""
    challenger = data.get("challenger")
    kept = [] if challenger is None else [("challenger", challenger)]
    rejected = data.get("rejected", [])
    if not isinstance(rejected, list):
        raise StateError(f"{where} has 'rejected' {rejected!r}; expected a list of versions")
    kept += [(f"rejected[{index}]", entry) for index, entry in enumerate(rejected)]
    for name, entry in kept:
        _check_entry(entry, f"{where} ({name})")
        if entry.get("report") is not None:
            check_report(entry["report"], f"{where} ({name})")


def parse_pointer(raw: bytes, url: str) -> dict[str, Any]:
    """The fields of a pointer's bytes, every name and checksum validated; else :class:`StateError`."""
    where = f"{url}/{POINTER}"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or data.get("format") != POINTER_FORMAT:
        raise StateError(f"{where} is not a retentive pointer (expected format {POINTER_FORMAT!r})")
    _check_entry(data, where)
    previous = data.get("previous", [])
    if not isinstance(previous, list):
        raise StateError(f"{where} has 'previous' {previous!r}; expected a list of versions")
    for index, entry in enumerate(previous):
        _check_entry(entry, f"{where} (previous[{index}])")
    _check_kept(data, where)
    return data


def _get_s3(fs: Any, path: str) -> tuple[bytes, str]:
    """The object's bytes and its ETag, from one GET (so the two belong together)."""
    from fsspec.asyn import sync

    bucket, key, _ = fs.split_path(path)

    async def get() -> tuple[bytes, str]:
        response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            data = await body.read()
        finally:
            body.close()
        return data, response["ETag"]

    return sync(fs.loop, get)


def read_pointer(fs: Any, root: str, url: str) -> Pointer | None:
    """The committed pointer of ``url`` (validated), or ``None`` when it has none."""
    path = f"{root}/{POINTER}"
    try:
        raw, etag = _get_s3(fs, path) if _is_s3(fs) else (fs.cat_file(path), None)
    except FileNotFoundError:
        return None
    except Exception as error:
        raise StateError(f"state at {url!r} cannot be read: {explain(error)}") from error
    return Pointer(parse_pointer(raw, url), raw, etag)


def same(a: Pointer | None, b: Pointer | None) -> bool:
    """Whether two reads saw the same commit (every pointer written is distinct by its ``commit``)."""
    return (a is None and b is None) or (a is not None and b is not None and a.raw == b.raw)


def commit_pointer(fs: Any, root: str, url: str, data: dict[str, Any], expected: Pointer | None) -> Pointer:
    """Write ``data`` as the pointer if the store still holds ``expected`` (``None``: no pointer).

    Returns the pointer written. Raises :class:`PointerMoved` when another commit came first
    (nothing written), :class:`StateError` when the store cannot be reached or read back.
    """
    raw = json.dumps(data, indent=2).encode("utf-8")
    path = f"{root}/{POINTER}"
    if _is_local(fs):
        return _commit_local(fs, root, url, data, raw, expected)
    if not _is_s3(fs):  # compare, then write: see the module docstring for what this does not exclude
        current = read_pointer(fs, root, url)
        if not same(current, expected):
            raise PointerMoved(current)
        fs.pipe_file(path, raw)
        return Pointer(data, raw)
    bucket, key, _ = fs.split_path(path)
    condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected.etag}
    try:
        response = fs.call_s3(
            "put_object", Bucket=bucket, Key=key, Body=raw, ContentType="application/json", **condition
        )
    except Exception as error:  # refused (412/409), or lost on the way: what does the store hold now?
        try:
            current = read_pointer(fs, root, url)
        except StateError:
            raise StateError(
                f"committing the pointer of {url!r} failed ({explain(error)}) and it cannot be read back: "
                "its committed state may be the new one or the previous one"
            ) from error
        if current is not None and current.raw == raw:  # ours: the PUT applied, its answer was lost
            return current
        if not same(current, expected):
            raise PointerMoved(current) from error
        raise
    fs.invalidate_cache(path)
    return Pointer(data, raw, response.get("ETag"))


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


#: how long a local commit waits for another writer's commit (a few milliseconds) to finish
_LOCAL_PATIENCE_S = 5.0


def _locked(target: Path) -> Any:
    """The lock on ``target`` (:class:`~retentive.state.locking.OutputLock`), waited for briefly:
    other holders only ever hold it for one pointer's compare and rename."""
    from retentive.state.locking import OutputLock

    deadline = time.monotonic() + _LOCAL_PATIENCE_S
    while True:
        try:
            return OutputLock(target).acquire()
        except StateLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _commit_local(fs: Any, root: str, url: str, data: dict[str, Any], raw: bytes, expected: Pointer | None) -> Pointer:
    """Compare, then write a temporary file and rename it over the pointer, all under the lock."""
    from retentive.state.format import _fsync_dir

    folder = Path(root)
    temporary = folder / f".{POINTER}.{uuid.uuid4().hex[:12]}"
    lock = _locked(folder / POINTER)
    try:
        current = read_pointer(fs, root, url)
        if not same(current, expected):
            raise PointerMoved(current)
        try:
            with open(temporary, "xb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, folder / POINTER)  # the commit point: atomic on a POSIX file system
            _fsync_dir(folder)
        except OSError as error:
            committed = read_pointer(fs, root, url)
            state = "the new one" if committed is not None and committed.raw == raw else "unchanged"
            raise StateError(
                f"committing the pointer of {url!r} failed ({error}); its committed state is {state}"
            ) from error
        finally:
            temporary.unlink(missing_ok=True)
    finally:
        lock.release()
    return Pointer(data, raw)
