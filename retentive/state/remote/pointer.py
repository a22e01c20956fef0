"""The pointer object of a remote state (``current.json``): read with the identity the store gives
it, validated, and replaced only while it still holds what the writer read (compare-and-swap).

    {"format": "retentive-remote-state", "version": ID, "manifest_sha256": ..., "extra": {...},
     "committed": ..., "commit": <unique id>, "previous": [{"version": ..., "manifest_sha256": ...,
     "extra": {...}, "committed": ...}, ...]}

``previous`` lists the versions committed before this one, newest first (what a rollback goes
back to, and what garbage collection keeps); ``commit`` makes every pointer written distinct, so a
writer recognises its own commit and a replaced pointer never looks like the one read.

How the swap is made conditional depends on the store:

- **S3** (s3fs): the PUT of the pointer carries ``If-Match: <ETag read>`` (or ``If-None-Match: *``
  where the writer read no pointer), so S3 applies it only if the pointer is still the one read;
  of two writers that read the same pointer, exactly one commits.
- **Any other fsspec filesystem** (``memory://``, ...): fsspec offers no conditional write that is
  known to be atomic there, so the pointer is read again and compared just before it is
  overwritten. That detects every commit that finished before this check, but not one that lands
  between the check and the write: two writers racing within that window are not excluded there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from retentive.errors import StateError
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
