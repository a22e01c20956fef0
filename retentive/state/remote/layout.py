"""The remote layout: immutable versions plus one pointer object, written last, as the commit point.

    <url>/current.json              {"format": "retentive-remote-state", "version": ID,
                                     "manifest_sha256": ..., "committed": ...}
    <url>/versions/ID/manifest.json
    <url>/versions/ID/model.pt, learner.pt, memory.pt
    <url>/versions/ID/hpo.csv       extra files of the folder (a search's record), checksums in
                                    the pointer's "extra"

Object stores have no rename, so :func:`publish_state` uploads a new version under a fresh ID
(the payloads first, then its manifest), checks the sizes, and only then overwrites
``current.json``: one small PUT, which S3 (and GCS, Azure, ``memory://``) applies whole. A reader
therefore sees the previous committed version or the new one, never a mix; a writer killed at any
moment leaves at most an uncommitted version, which no reader follows and the next publish
removes, together with the version it replaced. :func:`fetch_state` follows the pointer, checks the
manifest against the pointer's sha256 and every payload against the manifest's, and retries when a
concurrent publish removed the version it was reading. A URL holding a plain state folder
(``manifest.json`` at its root, e.g. uploaded with ``aws s3 sync``) is read too, verified the same
way. Two writers publishing to one URL at once are not coordinated (no lock on S3): each commit is
whole, the last one wins.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retentive.errors import StateError
from retentive.state.format import MANIFEST, PAYLOADS, read_manifest
from retentive.state.format import _sha256 as _sha256_file
from retentive.state.remote.filesystem import explain, open_url
from retentive.state.staging import new_staging_folder

POINTER = "current.json"
VERSIONS = "versions"
POINTER_FORMAT = "retentive-remote-state"
_ATTEMPTS = 3  # a reader racing a publish follows the new pointer this many times


def _new_version() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"


def read_pointer(fs: Any, root: str, url: str) -> dict[str, Any] | None:
    """The committed pointer of ``url``, or ``None`` when it has none."""
    try:
        raw = fs.cat_file(f"{root}/{POINTER}")
    except FileNotFoundError:
        return None
    except Exception as error:
        raise StateError(f"state at {url!r} cannot be read: {explain(error)}") from error
    try:
        pointer = json.loads(raw.decode("utf-8"))
        valid = pointer.get("format") == POINTER_FORMAT and isinstance(pointer.get("version"), str)
    except (ValueError, AttributeError):
        valid = False
    if not valid or "/" in pointer["version"]:
        raise StateError(f"{url}/{POINTER} is not a retentive pointer (expected format {POINTER_FORMAT!r})")
    return pointer


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
    """The folder's files beside the payloads and the manifest (``hpo.csv``), published with them."""
    core = {*PAYLOADS, MANIFEST}
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in core and not p.name.startswith("."))


def publish_state(local_folder: str | os.PathLike[str], url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Upload the finished state folder ``local_folder`` to ``url`` as its new committed version.

    Besides the payloads and the manifest, the folder's other files (:func:`extra_files`, e.g. a
    search's ``hpo.csv``) are uploaded too, their checksums recorded in the pointer.
    """
    folder = Path(local_folder)
    manifest = _verified_files(folder)
    extras = extra_files(folder)
    fs, root = open_url(url, storage_options)
    version = _new_version()
    prefix = f"{root}/{VERSIONS}/{version}"
    committing = False  # from the pointer's PUT on, the new version may be the committed one
    try:
        for name in (*PAYLOADS, *extras, MANIFEST):  # the manifest last: a version without one is unfinished
            fs.put_file(str(folder / name), f"{prefix}/{name}")
        for name in PAYLOADS:
            size = fs.info(f"{prefix}/{name}")["size"]
            if size != manifest["files"][name]["bytes"]:
                raise StateError(f"{url}/{VERSIONS}/{version}/{name} holds {size} bytes after the upload, "
                                 f"{manifest['files'][name]['bytes']} expected")
        pointer = {
            "format": POINTER_FORMAT, "version": version, "manifest_sha256": _sha256_file(folder / MANIFEST),
            "committed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "extra": {name: {"sha256": _sha256_file(folder / name), "bytes": (folder / name).stat().st_size} for name in extras},
        }
        committing = True
        fs.pipe_file(f"{root}/{POINTER}", json.dumps(pointer, indent=2).encode("utf-8"))  # the commit point
    except BaseException as error:
        if not committing:  # best effort: otherwise the next publish removes it
            with contextlib.suppress(Exception):
                fs.rm(prefix, recursive=True)
        if isinstance(error, StateError) or not isinstance(error, Exception):
            raise
        state = "may be the new one or the previous one" if committing else "is unchanged"
        raise StateError(f"publishing the state to {url!r} failed ({explain(error)}); its committed state {state}") from error
    remove_uncommitted(fs, root, keep=version)


def remove_uncommitted(fs: Any, root: str, keep: str) -> list[str]:
    """Remove every version but ``keep`` (replaced ones, and debris of killed writers); best effort."""
    removed = []
    try:
        fs.invalidate_cache(f"{root}/{VERSIONS}")  # another process may have published since a listing
        entries = fs.ls(f"{root}/{VERSIONS}", detail=False)
    except Exception:  # nothing to clean, or listing is not allowed: the commit stands either way
        return removed
    for entry in entries:
        if entry.rstrip("/").rsplit("/", 1)[-1] != keep:
            try:
                fs.rm(entry, recursive=True)
                removed.append(entry)
            except Exception:
                pass
    return removed


def fetch_state(
    url: str, local_dir: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> Path:
    """Download the committed state at ``url`` into ``local_dir`` (new, or an empty folder), verified;
    return ``local_dir``.

    The folder appears whole or not at all (downloaded beside it, then renamed); it is a v1 state
    folder that :func:`retentive.state.load_state` reads.
    """
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
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            pointer = read_pointer(fs, root, url)
            if _download(fs, root, url, pointer, work, last=attempt == _ATTEMPTS - 1):
                break
        os.rename(work, target)
    except OSError as error:
        raise StateError(f"fetching {url!r} into {str(target)!r} failed: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _download(fs: Any, root: str, url: str, pointer: dict[str, Any] | None, staging: Path, last: bool) -> bool:
    """Download and verify one version; ``False`` when a concurrent publish removed it (retry)."""
    where = root if pointer is None else f"{root}/{VERSIONS}/{pointer['version']}"
    shown = url if pointer is None else f"{url}/{VERSIONS}/{pointer['version']}"
    try:
        fs.get_file(f"{where}/{MANIFEST}", str(staging / MANIFEST))
    except FileNotFoundError:
        if pointer is None:
            raise StateError(f"{url!r} holds no retentive state: neither {POINTER} nor {MANIFEST} is there") from None
        if not last and read_pointer(fs, root, url) != pointer:
            return False
        raise StateError(f"{shown}/{MANIFEST} is missing although {url}/{POINTER} commits it") from None
    except Exception as error:
        raise StateError(f"state at {url!r} cannot be read: {explain(error)}") from error
    if pointer is not None and _sha256_file(staging / MANIFEST) != pointer.get("manifest_sha256"):
        raise StateError(f"{shown}/{MANIFEST} does not match the checksum {url}/{POINTER} records: it was modified")
    try:
        manifest = read_manifest(staging)  # format, version and kind, as for a local folder
    except StateError as error:
        raise StateError(str(error).replace(str(staging), shown)) from None
    expected = {name: manifest["files"][name] for name in PAYLOADS}
    expected.update({} if pointer is None else pointer.get("extra", {}))
    for name, entry in expected.items():
        try:
            fs.get_file(f"{where}/{name}", str(staging / name))
        except FileNotFoundError:
            if pointer is not None and not last and read_pointer(fs, root, url) != pointer:
                return False
            raise StateError(f"state file {shown}/{name} is missing") from None
        except Exception as error:
            raise StateError(f"state file {shown}/{name} cannot be read: {explain(error)}") from error
        path = staging / name
        if path.stat().st_size != entry.get("bytes") or _sha256_file(path) != entry.get("sha256"):
            raise StateError(f"state file {shown}/{name} does not match its manifest checksum "
                             f"({path.stat().st_size} bytes, {entry.get('bytes')} expected): it was modified or truncated")
    return True
