"""The remote layout: immutable versions plus one pointer object, written last, as the commit point.

    <url>/current.json              the pointer (:mod:`~retentive.state.remote.pointer`): the
                                    committed version, its manifest's sha256, its extra files'
                                    checksums, and the versions committed before it
    <url>/versions/ID/manifest.json
    <url>/versions/ID/model.pt, learner.pt, memory.pt
    <url>/versions/ID/hpo.csv       extra files of the folder (a search's record)

Object stores have no rename, so :func:`publish_state` uploads a new version under a fresh ID
(the payloads first, then its manifest), checks the sizes, and only then replaces
``current.json``: one small PUT, which the store applies whole, and only if the pointer is still
the one the publish expected (compare-and-swap; on S3 a conditional PUT, see
:mod:`~retentive.state.remote.pointer` for other stores). Of two publishes expecting the same
pointer one commits and the other gets :class:`~retentive.errors.StateConflictError`, its upload
removed: a commit is never silently lost. A reader sees the previous committed version or the new
one, never a mix. Versions are removed only as :mod:`~retentive.state.remote.versions` allows
(never the committed one, the previous ones the pointer keeps, or one that may be in flight), so
``retentive rollback URL`` can go back one version. :func:`fetch_state` follows the pointer,
checks the manifest against the pointer's sha256 and every file against its checksum, and follows
the new pointer when a concurrent publish moved it while it read. A URL holding a plain state folder
(``manifest.json`` at its root, e.g. uploaded with ``aws s3 sync``) is read too, verified the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retentive.errors import StateConflictError, StateError
from retentive.state.format import MANIFEST, PAYLOADS, read_manifest
from retentive.state.format import _sha256 as _sha256_file
from retentive.state.interrupts import CommitGuard
from retentive.state.remote.filesystem import explain, open_url
from retentive.state.remote.names import POINTER, VERSIONS, extra_name
from retentive.state.remote.pointer import (
    POINTER_FORMAT,
    Pointer,
    PointerMoved,
    _is_local,
    commit_pointer,
    read_pointer,
    same,
)
from retentive.state.remote.versions import COMMIT_DEADLINE_SECONDS, remove_stale_versions
from retentive.state.staging import new_staging_folder

__all__ = [
    "AT_START",
    "POINTER",
    "POINTER_FORMAT",
    "VERSIONS",
    "fetch_committed",
    "fetch_state",
    "holds_state",
    "publish_state",
    "read_pointer",
]
_ATTEMPTS = 3  # a reader racing a publish follows the new pointer this many times
#: ``publish_state(expect=AT_START)``: commit over the pointer the publish reads when it begins
AT_START: Any = object()


def _new_version() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"


def describe(pointer: Pointer | None) -> str:
    return "no committed state" if pointer is None else f"version {pointer.version}"


def holds_state(fs: Any, root: str, url: str) -> bool:
    """Whether ``url`` holds a committed state (a pointer, or a plain state folder)."""
    try:
        return read_pointer(fs, root, url) is not None or fs.exists(f"{root}/{MANIFEST}")
    except StateError:
        raise
    except Exception as error:
        raise StateError(f"state at {url!r} cannot be read: {explain(error)}") from error


def _verified_files(folder: Path) -> dict[str, Any]:
    """The manifest of a finished local state whose files all match it (nothing corrupt is published)."""
    manifest = read_manifest(folder)
    for name in PAYLOADS:
        entry, path = manifest["files"][name], folder / name
        if not path.is_file() or path.stat().st_size != entry.get("bytes") or _sha256_file(path) != entry.get("sha256"):
            raise StateError(f"state file {str(path)!r} does not match its manifest checksum; it is not published")
    return manifest


def extra_files(folder: Path) -> list[str]:
    """The folder's files beside the payloads and the manifest (``hpo.csv``), published with them;
    each must be a plain file name (:func:`~retentive.state.remote.names.extra_name`)."""
    core = {*PAYLOADS, MANIFEST}
    names = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name not in core and not p.name.startswith(".")
    )
    return [extra_name(name, f"state folder {str(folder)!r}") for name in names]


def publish_state(
    local_folder: str | os.PathLike[str],
    url: str,
    storage_options: dict[str, Any] | None = None,
    *,
    expect: Pointer | None = AT_START,
    keep_previous: int = 1,
) -> Pointer:
    """Upload the finished state folder ``local_folder`` to ``url`` as its new committed version;
    return the pointer committed.

    The commit replaces the pointer only if ``url`` still holds ``expect``: the pointer a caller
    read before (an in-place update passes the one it fetched), ``None`` for a URL that must hold
    no state yet, or by default the one this publish reads when it begins. Otherwise
    :class:`StateConflictError` names both versions; the pointer is untouched and the upload removed.
    The new pointer records the ``keep_previous`` (>= 1) versions committed before it, which are
    kept for ``retentive rollback``. Besides the payloads and the manifest, the folder's other files
    (:func:`extra_files`, e.g. a search's ``hpo.csv``) are uploaded too, their checksums in the pointer.
    """
    if not isinstance(keep_previous, int) or isinstance(keep_previous, bool) or keep_previous < 1:
        raise ValueError(f"keep_previous must be an int >= 1, got {keep_previous!r}")
    folder = Path(local_folder)
    manifest = _verified_files(folder)
    extras = extra_files(folder)
    fs, root = open_url(url, storage_options)
    expected = read_pointer(fs, root, url) if expect is AT_START else expect
    started = time.monotonic()
    entry = upload_version(fs, root, url, folder, manifest, extras)
    prefix = f"{root}/{VERSIONS}/{entry['version']}"
    if time.monotonic() - started > COMMIT_DEADLINE_SECONDS:
        with contextlib.suppress(Exception):
            fs.rm(prefix, recursive=True)
        raise StateError(
            f"publishing to {url!r} took longer than {COMMIT_DEADLINE_SECONDS:.0f} s, after which "
            "its upload may be removed as debris; nothing was committed"
        )
    try:  # from the pointer's write on, the new version may be the committed one: kept unless refused
        committed = commit_guarded(fs, root, url, pointer_document(entry, expected, keep_previous), expected)
    except PointerMoved as moved:  # refused: the upload was never committed, so it goes
        with contextlib.suppress(Exception):
            fs.rm(prefix, recursive=True)
        raise StateConflictError(
            f"{url!r} changed while this publish ran: it expected {describe(expected)}, but "
            f"{describe(moved.current)} is committed now; nothing was committed and the upload "
            f"{VERSIONS}/{entry['version']} was removed"
        ) from None
    remove_stale_versions(fs, root, url)
    return committed


def upload_version(
    fs: Any, root: str, url: str, folder: Path, manifest: dict[str, Any], extras: list[str]
) -> dict[str, Any]:
    """Upload the verified local state ``folder`` as a new immutable version under ``versions/``,
    committing nothing; return its pointer entry (id, manifest sha256, extra files' checksums).
    On any failure, interrupts included, the partial upload is removed and nothing else changed."""
    version = _new_version()
    prefix = f"{root}/{VERSIONS}/{version}"
    try:
        _upload(fs, folder, prefix, extras, manifest, f"{url}/{VERSIONS}/{version}")
        sync_local(fs, prefix)
    except BaseException as error:
        with contextlib.suppress(Exception):
            fs.rm(prefix, recursive=True)
        if isinstance(error, StateError) or not isinstance(error, Exception):
            raise
        raise StateError(
            f"publishing the state to {url!r} failed ({explain(error)}); its committed state is unchanged"
        ) from error
    return {
        "version": version,
        "manifest_sha256": _sha256_file(folder / MANIFEST),
        "extra": {
            name: {"sha256": _sha256_file(folder / name), "bytes": (folder / name).stat().st_size} for name in extras
        },
    }


def sync_local(fs: Any, prefix: str) -> None:
    """On a local file system, flush a version's files and folders to disk before a pointer names it
    (object stores persist each object before answering its PUT)."""
    if not _is_local(fs):
        return
    from retentive.state.format import _fsync_dir

    folder = Path(prefix)
    for path in folder.iterdir():
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
    for where in (folder, folder.parent, folder.parent.parent):
        _fsync_dir(where)


def commit_guarded(
    fs: Any, root: str, url: str, data: dict[str, Any], expected: Pointer | None, what: str = "the publish"
) -> Pointer:
    """Commit the pointer ``data`` over ``expected`` with SIGINT/SIGTERM held for the one write, so it
    commits whole or not at all. :class:`PointerMoved` when another commit came first (nothing
    written); :class:`StateError` when the outcome of the write is unknown."""
    guard = CommitGuard()
    try:
        with guard:
            committed = commit_pointer(fs, root, url, data, expected)  # the commit point
    except PointerMoved:
        guard.deliver(False, f"interrupted; nothing was committed to {url!r} (it had changed meanwhile)")
        raise
    except BaseException as error:
        if isinstance(error, StateError) or not isinstance(error, Exception):
            raise
        raise StateError(
            f"{what} of {url!r} failed ({explain(error)}); its committed state may be the new one or the previous one"
        ) from error
    guard.deliver(True, f"interrupted after the new state was committed to {url!r}; {what} is complete", committed)
    return committed


def pointer_document(entry: dict[str, Any], expected: Pointer | None, keep_previous: int) -> dict[str, Any]:
    """The pointer that commits the version ``entry`` over ``expected``: the ``keep_previous``
    versions committed before it (newest first), and the home's kept candidates carried over."""
    previous = [] if expected is None else [expected.entry(), *expected.previous]
    document: dict[str, Any] = {
        "format": POINTER_FORMAT,
        **{key: entry[key] for key in ("version", "manifest_sha256", "extra")},
        "committed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": uuid.uuid4().hex,
        "previous": previous[:keep_previous],
    }
    if expected is not None:
        if expected.challenger is not None and expected.challenger["version"] != entry["version"]:
            document["challenger"] = expected.challenger
        rejected = [kept for kept in expected.rejected if kept["version"] != entry["version"]]
        if rejected:
            document["rejected"] = rejected
    return document


def _upload(fs: Any, folder: Path, prefix: str, extras: list[str], manifest: dict[str, Any], shown: str) -> None:
    """Upload the folder's files under ``prefix``, the manifest last (a version without one is
    unfinished), and check the payloads' sizes there."""
    if _is_local(fs):  # object stores have no folders; a local file system needs them first
        fs.makedirs(prefix, exist_ok=True)
    for name in (*PAYLOADS, *extras, MANIFEST):
        fs.put_file(str(folder / name), f"{prefix}/{name}")
    for name in PAYLOADS:
        size = fs.info(f"{prefix}/{name}")["size"]
        if size != manifest["files"][name]["bytes"]:
            raise StateError(
                f"{shown}/{name} holds {size} bytes after the upload, {manifest['files'][name]['bytes']} expected"
            )


def fetch_state(url: str, local_dir: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> Path:
    """Download the committed state at ``url`` into ``local_dir`` (new, or an empty folder), verified;
    return ``local_dir``.

    The folder appears whole or not at all (downloaded beside it, then renamed); it is a v1 state
    folder that :func:`retentive.state.load_state` reads. Every name in the pointer is validated
    before anything is written (:mod:`~retentive.state.remote.names`).
    """
    return fetch_committed(url, local_dir, storage_options)[0]


def fetch_committed(
    url: str, local_dir: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> tuple[Path, Pointer | None]:
    """:func:`fetch_state`, also returning the pointer followed (``None``: a plain folder at ``url``)."""
    target = Path(local_dir)
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()  # an empty folder (tempfile.mkdtemp's) is taken as free
    if target.exists():
        raise StateError(f"cannot fetch {url!r} into {str(target)!r}: that folder already exists and is not empty")
    fs, root = open_url(url, storage_options)
    staging = new_staging_folder(target)
    work = staging / "state"  # read_manifest refuses a folder named like a staging one
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(_ATTEMPTS):
            pointer = read_pointer(fs, root, url)  # validated before anything is written
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)

            def moved(read: Pointer | None = pointer) -> bool:
                return not same(read_pointer(fs, root, url), read)

            if download(
                fs,
                root,
                url,
                None if pointer is None else pointer.data,
                work,
                moved if attempt < _ATTEMPTS - 1 and pointer is not None else None,
            ):
                break
        os.rename(work, target)
    except OSError as error:
        raise StateError(f"fetching {url!r} into {str(target)!r} failed: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, pointer


def download(
    fs: Any, root: str, url: str, entry: dict[str, Any] | None, staging: Path, moved: Callable[[], bool] | None = None
) -> bool:
    """Download and verify one version (``entry``: a validated pointer entry; ``None``: the plain
    folder at ``url``) into ``staging``; ``False`` when a file is gone and ``moved()`` says a
    concurrent commit moved the pointer (the caller retries)."""
    where = root if entry is None else f"{root}/{VERSIONS}/{entry['version']}"
    shown = url if entry is None else f"{url}/{VERSIONS}/{entry['version']}"
    try:
        fs.get_file(f"{where}/{MANIFEST}", str(staging / MANIFEST))
    except FileNotFoundError:
        if entry is None:
            raise StateError(f"{url!r} holds no retentive state: neither {POINTER} nor {MANIFEST} is there") from None
        if moved is not None and moved():
            return False
        raise StateError(f"{shown}/{MANIFEST} is missing although {url}/{POINTER} commits it") from None
    except Exception as error:
        raise StateError(f"state at {url!r} cannot be read: {explain(error)}") from error
    if entry is not None and _sha256_file(staging / MANIFEST) != entry["manifest_sha256"]:
        raise StateError(f"{shown}/{MANIFEST} does not match the checksum {url}/{POINTER} records: it was modified")
    try:
        manifest = read_manifest(staging)  # format, version, kind, and exactly the known payload names
    except StateError as error:
        raise StateError(str(error).replace(str(staging), shown)) from None
    expected = {name: manifest["files"][name] for name in PAYLOADS}
    expected.update({} if entry is None else entry.get("extra", {}))
    for name, checksum in expected.items():
        try:
            fs.get_file(f"{where}/{name}", str(staging / name))
        except FileNotFoundError:
            if moved is not None and moved():
                return False
            raise StateError(f"state file {shown}/{name} is missing") from None
        except Exception as error:
            raise StateError(f"state file {shown}/{name} cannot be read: {explain(error)}") from error
        path = staging / name
        if path.stat().st_size != checksum.get("bytes") or _sha256_file(path) != checksum.get("sha256"):
            raise StateError(
                f"state file {shown}/{name} does not match its manifest checksum "
                f"({path.stat().st_size} bytes, {checksum.get('bytes')} expected): it was modified or truncated"
            )
    return True
