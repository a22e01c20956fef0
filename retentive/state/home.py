"""A model home: every version of one model, the one serving and those kept beside it.

One layout, on a local folder and at a URL alike (:mod:`retentive.state.remote.layout`)::

    <home>/current.json          the pointer, written last: the commit point (compare-and-swap)
    <home>/versions/<id>/        one immutable version: manifest.json, model.pt, learner.pt,
                                 memory.pt (and extra files such as hpo.csv)

The pointer names the *current* version (the one served, read by ``--input-state HOME``), the
*previous* ones (newest first, what a rollback goes back to), a *challenger* (a candidate a gate
refused, with its gate report) and *rejected* ones (earlier challengers and rolled-back versions).
Nothing is ever overwritten: a new state is uploaded as a new version, and only the pointer's
replacement, whole or not at all, changes what is served. A local home's pointer is renamed into
place under a lock; an object store's is one conditional PUT. Every name read from a pointer is
validated (:mod:`~retentive.state.remote.names`) and every version is verified against its
checksums before it is promoted or fetched.

The API (stable: gates and the registry build on it)::

    home = ModelHome(location)                # a folder or a URL (s3://...); nothing is read yet
    home.create()                             # make a local folder a home (versions/); idempotent
    home.current() -> Version | None          # the serving version (None: nothing promoted yet)
    home.challenger() -> Version | None       # the refused candidate kept to look at, .report
    home.history() -> list[Version]           # current, previous..., challenger, rejected...
    home.write_candidate(folder) -> Version   # upload a finished state folder: immutable, role
                                              # "candidate", not served; nothing is committed
    home.promote(version, expect=AT_START) -> Version
    home.mark_challenger(version, report, expect=AT_START) -> Version
    home.rollback(expect=AT_START) -> Version # the previous version serves again
    home.fetch(local_dir, version=None) -> Path   # a verified local copy (default: current)
    home.manifest(version=None) -> dict       # a version's verified manifest

An updater writing to a home goes through :class:`~retentive.state.remote.locations.StateLocations`
(``updater.state_locations``): ``.home`` is the output as a :class:`ModelHome`, ``.expected_version``
the current version id it read, and ``.publish(challenger_report=report)`` writes the saved state as
a new version kept as the challenger instead of promoting it (a refused gate); a manifest's
``lineage["gate"]`` is the updater's ``gate_report`` when its state is written
(:mod:`~retentive.state.lineage`).

``version`` is a :class:`Version` or a version id. Every writer compares and swaps against the
*current version id* it read: ``expect`` is that id (``None``: the home must have no current
version yet; :data:`AT_START`: the one read when the call begins); if another writer changed the
current version meanwhile, :class:`~retentive.errors.StateConflictError` and nothing is committed
(a change that keeps the current version, such as marking a challenger, is retried over). A
refused ``promote`` of a fresh candidate leaves the candidate in place (promote it later, or let
garbage collection remove it after its grace period). :func:`is_home` tells a local home from a
single state folder; single folders and in-place folders keep their own layout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from retentive.errors import StateConflictError, StateError
from retentive.state.format import MANIFEST, check_manifest
from retentive.state.remote.filesystem import explain, is_url, local_path, open_url
from retentive.state.remote.layout import (
    AT_START,
    _verified_files,
    commit_guarded,
    download,
    extra_files,
    fetch_committed,
    pointer_document,
    upload_version,
)
from retentive.state.remote.names import POINTER, VERSIONS, version_id
from retentive.state.remote.pointer import Pointer, PointerMoved, check_report, read_pointer
from retentive.state.remote.rollback import KEEP_REJECTED, rollback_url
from retentive.state.remote.versions import remove_stale_versions

__all__ = ["AT_START", "ModelHome", "Version", "is_home"]
_ATTEMPTS = 5  # a writer whose pointer changed but whose current version did not tries again
ROLES = ("current", "previous", "challenger", "rejected", "candidate")


@dataclass(frozen=True)
class Version:
    """One version of a home: its id, its manifest's sha256 (the lineage's name for it), its role."""

    id: str
    manifest_sha256: str
    role: str
    committed: str | None = None
    report: dict[str, Any] | None = None  # a challenger's gate report
    reason: str | None = None  # why a rejected version was set aside
    extra: dict[str, Any] = field(default_factory=dict)
    #: written and checked by this process (write_candidate): promote re-reads only its manifest
    verified: bool = field(default=False, compare=False, repr=False)

    def entry(self) -> dict[str, Any]:
        """This version as a pointer entry."""
        return {"version": self.id, "manifest_sha256": self.manifest_sha256, "extra": self.extra}


def _version(entry: dict[str, Any], role: str) -> Version:
    reason = entry.get("reason")
    return Version(
        entry["version"],
        entry["manifest_sha256"],
        role,
        entry.get("committed") if isinstance(entry.get("committed"), str) else None,
        entry.get("report"),
        reason if isinstance(reason, str) else None,
        entry.get("extra", {}),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def is_home(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is read and written as a model home: any URL, or a local folder holding
    ``current.json`` or ``versions/`` (a single state folder holds ``manifest.json`` instead)."""
    if is_url(location):
        return True
    path = local_path(location)
    return (path / POINTER).is_file() or (path / VERSIONS).is_dir()


def _describe(version: str | None) -> str:
    return "no current version" if version is None else f"version {version}"


class ModelHome:
    """The versions of one model at ``location`` (see the module docstring for the API)."""

    def __init__(
        self,
        location: str | os.PathLike[str],
        storage_options: dict[str, Any] | None = None,
        *,
        keep_previous: int = 1,
        keep_rejected: int = KEEP_REJECTED,
    ) -> None:
        if not isinstance(keep_previous, int) or isinstance(keep_previous, bool) or keep_previous < 1:
            raise ValueError(f"keep_previous must be an int >= 1, got {keep_previous!r}")
        if not isinstance(keep_rejected, int) or isinstance(keep_rejected, bool) or keep_rejected < 0:
            raise ValueError(f"keep_rejected must be an int >= 0, got {keep_rejected!r}")
        text = os.fspath(location)
        self.location = text.rstrip("/") if is_url(text) else str(local_path(text))
        self.storage_options = storage_options
        self.keep_previous, self.keep_rejected = keep_previous, keep_rejected
        self._fs, self._root = open_url(self.location, storage_options)

    def __repr__(self) -> str:
        return f"ModelHome({self.location!r})"

    # ---------------------------------------------------------------- reading
    def pointer(self) -> Pointer | None:
        """The pointer as committed now (validated), ``None`` before the first promotion."""
        return read_pointer(self._fs, self._root, self.location)

    def current(self) -> Version | None:
        pointer = self.pointer()
        return None if pointer is None else _version(pointer.data, "current")

    def challenger(self) -> Version | None:
        pointer = self.pointer()
        return None if pointer is None or pointer.challenger is None else _version(pointer.challenger, "challenger")

    def history(self) -> list[Version]:
        """Every version the pointer keeps: current, previous (newest first), challenger, rejected."""
        return _recorded(self.pointer())

    def manifest(self, version: Version | str | None = None) -> dict[str, Any]:
        """The manifest of ``version`` (default: the current one), checked against the sha256 the
        pointer (or the :class:`Version`) records for it."""
        import hashlib

        target = self._resolve(self.pointer(), version)
        shown = f"{self.location}/{VERSIONS}/{target.id}"
        try:
            raw = self._fs.cat_file(f"{self._root}/{VERSIONS}/{target.id}/{MANIFEST}")
        except FileNotFoundError:
            raise StateError(f"{shown}/{MANIFEST} is missing") from None
        except Exception as error:
            raise StateError(f"{shown}/{MANIFEST} cannot be read: {explain(error)}") from error
        if hashlib.sha256(raw).hexdigest() != target.manifest_sha256:
            raise StateError(f"{shown}/{MANIFEST} does not match the checksum recorded for it: it was modified")
        return check_manifest(raw, Path(shown))

    def fetch(self, local_dir: str | os.PathLike[str], version: Version | str | None = None) -> Path:
        """A verified local copy of ``version`` (default: the current one) in the new folder ``local_dir``."""
        if version is None:
            return fetch_committed(self.location, local_dir, self.storage_options)[0]
        target, folder = self._resolve(self.pointer(), version), Path(local_dir)
        if folder.exists():
            raise StateError(f"cannot fetch into {str(folder)!r}: that folder already exists")
        folder.mkdir(parents=True)
        try:
            download(self._fs, self._root, self.location, target.entry(), folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder

    # ---------------------------------------------------------------- writing
    def create(self) -> ModelHome:
        """Make a local folder a home (its ``versions/`` folder); at a URL there is nothing to make."""
        if is_url(self.location):
            return self
        path = Path(self.location)
        if (path / MANIFEST).exists():
            raise StateError(f"{self.location!r} is a single state folder, not a model home; choose another folder")
        try:
            (path / VERSIONS).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateError(f"cannot create the model home {self.location!r}: {error}") from error
        return self

    def write_candidate(self, folder: str | os.PathLike[str]) -> Version:
        """Upload the finished state folder ``folder`` as a new immutable version; serve nothing new.

        Every file is checked against the folder's manifest first; on any failure the partial
        upload is removed. The returned version has role ``"candidate"``: :meth:`promote` or
        :meth:`mark_challenger` records it; unrecorded, it is removed after the grace period.
        """
        if not is_url(self.location):
            self.create()
        source = Path(folder)
        manifest = _verified_files(source)
        entry = upload_version(self._fs, self._root, self.location, source, manifest, extra_files(source))
        return Version(entry["version"], entry["manifest_sha256"], "candidate", extra=entry["extra"], verified=True)

    def promote(self, version: Version | str, expect: Any = AT_START) -> Version:
        """Make ``version`` the current one; the replaced current becomes the newest previous one.

        ``version`` is verified first (every checksum; a fresh candidate of this process: its
        manifest). Promoting the challenger or a rejected version takes it off that list.
        Promoting the current version changes nothing. :class:`StateConflictError` when the
        current version is no longer ``expect``; nothing is committed then.
        """

        def change(pointer: Pointer | None, target: Version) -> dict[str, Any]:
            document = pointer_document(target.entry(), pointer, self.keep_previous)
            document["previous"] = [e for e in document["previous"] if e["version"] != target.id]
            return document

        return self._commit(version, expect, "promotion", change, "current")

    def mark_challenger(self, version: Version | str, report: dict[str, Any], expect: Any = AT_START) -> Version:
        """Keep ``version`` beside the current one as the challenger, with its gate ``report`` (a JSON
        object); the current version keeps serving. A challenger it replaces becomes the newest
        rejected version. Refused for the current version and for a home with no current version."""
        check_report(report, f"the report for challenger {version if isinstance(version, str) else version.id}")

        def change(pointer: Pointer | None, target: Version) -> dict[str, Any]:
            assert pointer is not None
            if target.id == pointer.version:
                raise StateError(
                    f"version {target.id} is the current version of {self.location!r}; it cannot be the challenger"
                )
            document = {**pointer.data, "commit": uuid.uuid4().hex}
            document["challenger"] = {**target.entry(), "committed": _now(), "report": report}
            old = pointer.challenger
            replaced = (
                [] if old is None or old["version"] == target.id else [{**old, "reason": f"replaced at {_now()}"}]
            )
            kept = [e for e in pointer.rejected if e["version"] != target.id]
            document["rejected"] = [*replaced, *kept][: self.keep_rejected]
            document.pop("rolled_back_from", None)
            return document

        return self._commit(version, expect, "challenger's record", change, "challenger")

    def rollback(self, expect: Any = AT_START) -> Version:
        """The previous version serves again (verified first); the rolled-back one is kept as rejected."""
        rollback_url(self.location, self.storage_options, expect=expect, keep_rejected=self.keep_rejected)
        current = self.current()
        assert current is not None
        return current

    # ---------------------------------------------------------------- internals
    def _resolve(self, pointer: Pointer | None, version: Version | str | None) -> Version:
        """``version`` as recorded: by id among the pointer's versions, or a candidate as given."""
        if version is None:
            if pointer is None:
                raise StateError(f"{self.location!r} has no current version")
            return _version(pointer.data, "current")
        wanted = version.id if isinstance(version, Version) else version_id(version, "the request")
        for known in _recorded(pointer):
            if known.id == wanted:
                return known
        if isinstance(version, Version):
            version_id(version.id, "the candidate")
            return version
        raise StateError(
            f"{self.location!r} records no version {wanted} (current, previous, challenger or rejected); "
            "see `retentive inspect --history`"
        )

    def _verify(self, target: Version) -> None:
        """Every file of ``target`` against its checksums (a fresh candidate of ours: its manifest)."""
        if target.verified:
            self.manifest(target)
            return
        with tempfile.TemporaryDirectory(prefix="retentive-verify-") as scratch:
            download(self._fs, self._root, self.location, target.entry(), Path(scratch))

    def _commit(self, version: Version | str, expect: Any, verb: str, change: Any, role: str) -> Version:
        """Compare-and-swap the pointer: ``change(pointer, target)`` is the new pointer, committed
        only while the current version is ``expect``; retried when only other fields moved."""
        verified: str | None = None
        for _ in range(_ATTEMPTS):
            pointer = self.pointer()
            now = None if pointer is None else pointer.version
            expect = now if expect is AT_START else expect
            if now != expect:
                raise StateConflictError(
                    f"{self.location!r} changed: {_describe(expect)} was expected to be current, but "
                    f"{_describe(now)} is current now; nothing was committed (the {verb} was refused)"
                )
            target = self._resolve(pointer, version)
            if role == "current" and target.id == now:
                return target
            if role == "challenger" and pointer is None:
                raise StateError(
                    f"{self.location!r} has no current version yet; promote one before keeping a challenger"
                )
            if verified != target.id:
                self._verify(replace(target, verified=getattr(version, "verified", False)))
                verified = target.id
            try:
                document = change(pointer, target)
                committed = commit_guarded(self._fs, self._root, self.location, document, pointer, f"the {verb}")
            except PointerMoved:
                continue
            remove_stale_versions(self._fs, self._root, self.location)
            return _version(committed.data if role == "current" else committed.data["challenger"], role)
        raise StateConflictError(f"{self.location!r} kept changing during the {verb}; nothing was committed")


def _recorded(pointer: Pointer | None) -> list[Version]:
    if pointer is None:
        return []
    challenger = [] if pointer.challenger is None else [_version(pointer.challenger, "challenger")]
    return [
        _version(pointer.data, "current"),
        *(_version(entry, "previous") for entry in pointer.previous),
        *challenger,
        *(_version(entry, "rejected") for entry in pointer.rejected),
    ]
