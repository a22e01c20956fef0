"""The state folder (format v1): the one place that reads and writes it.

    manifest.json   format and version, updater class and hyperparameters, tasks seen, and the
                    sha256 and size of every other file
    model.pt        the model's state_dict
    learner.pt      counters and every component's state_dict
    memory.pt       the replay memory's tensors

Every ``.pt`` holds tensors and plain containers only and is read with
``torch.load(weights_only=True)``: loading a state folder can never run code. A folder is written
beside its target (:mod:`retentive.state.staging`) under the target's lock (:mod:`retentive.state.locking`)
and renamed into place, so it appears whole or not at all; the input folder is only ever read.
Every failure to read or write surfaces as :class:`~retentive.errors.StateError` naming the path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import torch

from retentive._version import __version__
from retentive.errors import StateError
from retentive.state import streaming
from retentive.state.budget import check_archive, check_declared
from retentive.state.interrupts import CommitGuard
from retentive.state.locking import OutputLock
from retentive.state.reading import FolderVersion, read_consistently
from retentive.state.staging import (
    STAGING_PREFIX,
    discarded_on_failure,
    is_staging,
    new_staging_folder,
    remove_stale_staging,
    rename_noreplace,
)
from retentive.state.streaming import write_payload as _write_payload

FORMAT = "retentive-state"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PAYLOADS = ("model.pt", "learner.pt", "memory.pt")
#: ``manifest["kind"]``: a finished update's state, or a resume checkpoint of an unfinished one.
KIND_STATE = "state"
KIND_CHECKPOINT = "checkpoint"
#: The files of a Renate state folder, recognised only to refuse them with a helpful message.
RENATE_FILES = ("learner.ckpt", "model.ckpt")
_T = TypeVar("_T")
__all__ = ["STAGING_PREFIX", "State", "check_output_folder", "load_state", "read_manifest", "save_state"]


@dataclass
class State:
    """A loaded state folder: three payloads and the manifest that vouched for them.

    ``version`` is the sha256 of the manifest bytes they were verified against (set by
    :func:`load_state`; ``None`` for a state built in memory): it names exactly what was loaded.
    """

    model: dict[str, Any]
    learner: dict[str, Any]
    memory: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)
    version: str | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output_folder(output: str | os.PathLike[str], input_folder: str | os.PathLike[str] | None) -> Path:
    """Refuse an output folder that exists or is the input folder, before any training is done."""
    out = Path(output)
    if input_folder is not None and out.resolve() == Path(input_folder).resolve():
        raise StateError(
            f"output_state_folder {str(out)!r} is the input_state_folder; the input is never modified, "
            "so write the new state to another folder"
        )
    try:
        exists = os.path.lexists(out)  # a dangling symbolic link counts: it is never written through
    except OSError as error:
        raise StateError(f"output_state_folder {str(out)!r} cannot be checked: {error}") from error
    if exists:
        raise StateError(f"output_state_folder {str(out)!r} already exists; a state folder is never overwritten")
    return out


def save_state(
    folder: str | os.PathLike[str], state: State, lock: OutputLock | None = None, guard: CommitGuard | None = None
) -> Path:
    """Write ``state`` atomically to ``folder``, which must not exist yet.

    ``lock`` is the target's :class:`~retentive.state.locking.OutputLock` when the caller already holds
    it (an update holds it from start to finish); otherwise it is taken here. Staging folders a
    crashed writer left for this target are removed first. Any OS error (disk full, permissions)
    leaves no trace and is raised as :class:`StateError`. ``guard`` holds SIGINT and SIGTERM back
    from the final rename on, until the caller delivers them; without one, a guard of its own does
    so at the end (:class:`~retentive.state.interrupts.UpdateInterrupted` says whether ``folder``
    was written).
    """
    target = Path(folder)
    own_lock = lock is None
    if lock is None:
        lock = OutputLock(target).acquire()
    elif not lock.held:
        raise StateError(f"save_state was given a lock on {str(lock.target)!r} that is not held")
    own_guard, guard = guard is None, guard or CommitGuard()
    committed = False
    try:
        check_output_folder(target, None)
        remove_stale_staging(target)
        committed = _write_staged(target, state, guard)
    finally:
        if own_lock:
            lock.release()
        if own_guard:
            guard.deliver(
                committed,
                f"interrupted after the state folder {str(target)!r} was written"
                if committed
                else f"interrupted before the state folder {str(target)!r} was written; nothing was written",
            )
    return target


def _write_staged(target: Path, state: State, guard: CommitGuard) -> bool:
    """Rename the staged state to ``target`` (signals held from the rename on); True once renamed."""
    with discarded_on_failure(write_staging(target, state), target) as staging:
        guard.start()
        try:
            rename_noreplace(staging, target)
        except FileExistsError:
            raise StateError(
                f"output_state_folder {str(target)!r} appeared while the state was being written"
            ) from None
    try:
        _fsync_dir(target.parent)
    except OSError as error:
        raise StateError(
            f"the state folder {str(target)!r} is written, but syncing its folder failed: {error}"
        ) from error
    return True


def write_staging(target: Path, state: State) -> Path:
    """Write ``state`` completely (payloads, manifest, fsynced) into a new staging folder beside
    ``target`` and return it; the caller renames it into place. On failure nothing is left."""
    with discarded_on_failure(new_staging_folder(target), target) as staging:
        staging.mkdir()
        files: dict[str, dict[str, Any]] = {}
        for name, payload in zip(PAYLOADS, (state.model, state.learner, state.memory)):
            files[name] = _write_payload(staging / name, payload)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": KIND_STATE,
            "retentive_version": __version__,
            "torch_version": torch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **state.manifest,
            "files": files,
        }
        with open(staging / MANIFEST, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(staging)
    return staging


def read_manifest(folder: str | os.PathLike[str], allow_checkpoint: bool = False) -> dict[str, Any]:
    """Read and check a folder's manifest (format, version, kind), without reading the payloads.

    A staging folder (an unfinished write) and a resume checkpoint (an unfinished update) are
    refused: neither is a state. ``allow_checkpoint`` is for :mod:`retentive.state.resume` alone.
    """
    path = _state_path(folder)
    return _read_version(path, lambda version: _manifest_of(version, path, allow_checkpoint))


def _state_path(folder: str | os.PathLike[str]) -> Path:
    path = Path(folder)
    if is_staging(path):
        raise StateError(
            f"{str(path)!r} is a staging folder left by an interrupted write ({STAGING_PREFIX}*), not a "
            "state; the next update writing that output removes it"
        )
    return path


def _read_version(path: Path, read: Callable[[FolderVersion], _T]) -> _T:
    """``read`` against one version of the folder ``path`` (:mod:`retentive.state.reading`)."""
    try:
        return read_consistently(path, read)
    except (FileNotFoundError, NotADirectoryError) as error:
        if error.filename is not None and Path(error.filename) == path:  # the folder itself
            raise StateError(f"input_state_folder {str(path)!r} does not exist or is not a folder") from error
        raise StateError(f"state folder {str(path)!r} cannot be read: {error}") from error
    except OSError as error:
        raise StateError(f"state folder {str(path)!r} cannot be read: {error}") from error


def _manifest_of(version: FolderVersion, path: Path, allow_checkpoint: bool) -> dict[str, Any]:
    """The checked manifest of one version of ``path``."""
    return check_manifest(_manifest_bytes(version, path), path, allow_checkpoint)


def _manifest_bytes(version: FolderVersion, path: Path) -> bytes:
    """The manifest bytes of one version of ``path`` (a Renate folder or no manifest: StateError)."""
    manifest_path = path / MANIFEST
    if not version.has(MANIFEST):
        if all(version.has(name) for name in RENATE_FILES):
            named = path if path.name else path.resolve()  # "." has no name to extend
            converted = named.with_name(f"{named.name}_retentive")
            raise StateError(
                f"{str(path)!r} is a Renate state folder ({', '.join(RENATE_FILES)}), which retentive reads only "
                f"through its converter (Renate's pickles can run code when loaded): run `retentive import-renate "
                f"{shlex.quote(str(path))} {shlex.quote(str(converted))}`, then pass {str(converted)!r} as "
                "input_state_folder"
            )
        raise StateError(f"{str(path)!r} is not a retentive state folder: {MANIFEST} is missing")
    try:
        raw = version.read(MANIFEST)
    except OSError as error:
        raise StateError(f"{str(manifest_path)!r} cannot be read: {error}") from error
    return raw


def check_manifest(raw: bytes, path: Path, allow_checkpoint: bool = False) -> dict[str, Any]:
    """The manifest of the folder ``path`` from its bytes ``raw``: format, version, kind and files checked."""
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise StateError(f"{str(manifest_path)!r} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StateError(f"{str(manifest_path)!r} is not a retentive manifest (expected format {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StateError(f"{str(manifest_path)!r} has no integer format_version (got {version!r})")
    if version > FORMAT_VERSION:
        raise StateError(
            f"{str(path)!r} is state format v{version}, newer than this retentive ({__version__}) reads "
            f"(v{FORMAT_VERSION}); upgrade retentive to load it"
        )
    if version < 1:
        raise StateError(
            f"{str(path)!r} has state format v{version}, older than any retentive wrote (v1 is the first); "
            "there is no migration from it"
        )
    kind = manifest.get("kind", KIND_STATE)
    if kind == KIND_CHECKPOINT and not allow_checkpoint:
        raise StateError(
            f"{str(path)!r} is a resume checkpoint of an unfinished update, not a state; rerun that update "
            "with resume=True to finish it"
        )
    if kind not in (KIND_STATE, KIND_CHECKPOINT):
        raise StateError(f"{str(manifest_path)!r} has kind {kind!r}; expected {KIND_STATE!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(PAYLOADS):
        raise StateError(f"{str(manifest_path)!r} must list exactly the files {list(PAYLOADS)}, got {files!r}")
    return manifest


def load_state(
    folder: str | os.PathLike[str], map_location: str | torch.device = "cpu", allow_checkpoint: bool = False
) -> State:
    """Verify every file against the manifest, then read the payloads without running any code.

    The manifest and the payloads come from one version of the folder, each file read once: the
    bytes hashed are the bytes deserialised (:mod:`retentive.state.reading`), so a reader during
    an in-place swap or a rollback gets one whole version, never a mix. Each payload's archive and
    declared sizes are checked before and after ``torch.load`` (:mod:`retentive.state.budget`).
    """
    path = _state_path(folder)
    return _read_version(path, lambda version: _load_version(version, path, map_location, allow_checkpoint))


def _load_version(
    version: FolderVersion, path: Path, map_location: str | torch.device, allow_checkpoint: bool
) -> State:
    present = [name for name in (MANIFEST, *PAYLOADS) if version.has(name)]
    try:
        version.open(*present)  # all pinned to this version before any is read
    except OSError as error:
        raise StateError(f"state folder {str(path)!r} cannot be read: {error}") from error
    raw = _manifest_bytes(version, path)
    manifest = check_manifest(raw, path, allow_checkpoint)
    payloads = [_payload(version, path / name, manifest["files"][name], map_location) for name in PAYLOADS]
    return State(
        model=payloads[0],
        learner=payloads[1],
        memory=payloads[2],
        manifest=manifest,
        version=hashlib.sha256(raw).hexdigest(),
    )


def _payload(version: FolderVersion, file_path: Path, entry: Any, map_location: str | torch.device) -> dict[str, Any]:
    """One payload: read once, checked against its manifest entry, its archive checked, then loaded."""
    name = file_path.name
    if not version.has(name):
        raise StateError(f"state file {str(file_path)!r} is missing")
    expected = entry.get("bytes") if isinstance(entry, dict) else None
    try:
        size = version.size(name)
        if streaming.maps(size):
            return streaming.mapped_payload(version, file_path, entry, map_location)
        data = version.read(name) if isinstance(expected, int) and size == expected else None
    except OSError as error:
        raise StateError(f"state file {str(file_path)!r} cannot be read: {error}") from error
    if data is None or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise streaming.mismatch(file_path, size, entry)
    check_archive(data, str(file_path))
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as error:  # an unpickler refusal or a corrupt archive
        raise StateError(f"state file {str(file_path)!r} could not be read safely: {error}") from error
    if not isinstance(payload, dict):
        raise StateError(f"state file {str(file_path)!r} holds {type(payload).__name__}, expected a dict")
    check_declared(payload, len(data), str(file_path), memory=name == "memory.pt")
    return payload
