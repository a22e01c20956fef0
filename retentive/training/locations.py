"""Where a job's input state comes from and where its output state goes: the one place that
reads locations.

Each is a local folder or a URL (``s3://...``, any fsspec filesystem, see
:mod:`retentive.state.remote`). A URL input is probed and fetched (verified) into the job's
working directory before any trial runs and removed afterwards; a URL output is probed for
writing before any trial runs, and the winner is published there crash-safely (the pointer object
is the commit point), with ``hpo.csv`` beside its payloads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retentive.errors import StateError

Location = str | os.PathLike[str]


def is_url(location: Location) -> bool:
    """Whether ``location`` names a URL (``scheme://...``, not ``file://``) rather than a local path."""
    from retentive.state.remote import is_url as remote_is_url

    return remote_is_url(location)


def _url(location: Location) -> str:
    return os.fspath(location).rstrip("/")


def check_output_location(output: Location, input_location: Location | None) -> Path | str:
    """Refuse an output location that cannot be promoted to, before any trial runs; return it
    resolved (a local folder's absolute path, or the URL)."""
    if input_location is not None and _same(output, input_location):
        raise StateError(
            f"output_state_url {str(output)!r} is the input_state_url; a job never modifies its input, "
            "so write the new state to another location"
        )
    if is_url(output):
        from retentive.state.remote import check_reachable
        from retentive.state.remote.filesystem import open_url
        from retentive.state.remote.layout import holds_state

        url = _url(output)
        check_reachable(url, write=True)
        fs, root = open_url(url)
        if holds_state(fs, root, url):
            raise StateError(f"output_state_url {url!r} already holds a committed state; a state is never overwritten")
        return url
    from retentive.state.remote import local_path

    out = local_path(output)
    if out.exists():
        raise StateError(f"output_state_url {str(out)!r} already exists; a state folder is never overwritten")
    return out.resolve()


def _same(a: Location, b: Location) -> bool:
    if is_url(a) or is_url(b):
        return is_url(a) and is_url(b) and _url(a) == _url(b)
    from retentive.state.remote import local_path

    return local_path(a).resolve() == local_path(b).resolve()


def default_working_directory(output: Path | str, prefix: str) -> Path:
    """Beside a local output; in the current folder for a URL output."""
    if isinstance(output, Path):
        return output.parent / f"{prefix}{output.name}"
    return Path.cwd() / f"{prefix}{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def job_working_directory(given: Location | None, keep: bool = False) -> Iterator[Path]:
    """A job's working directory (prepared data, TensorBoard logs, trial folders): the one given,
    kept as Renate keeps it; by default a temporary folder, removed when the job ends unless
    ``keep``, so that a job leaves nothing in the current folder but its output state."""
    if given is not None:
        yield Path(given)
        return
    folder = Path(tempfile.mkdtemp(prefix="retentive-job-"))
    try:
        yield folder
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def localized_input(location: Location | None, tmp: Location) -> Iterator[Path | None]:
    """The input state as a local, verified-readable folder for the block (``None``: the first chunk).

    A local folder is used where it is, and only ever read; a URL's committed state is fetched
    into ``tmp`` (verified) and removed when the block ends.
    """
    if location is None:
        yield None
        return
    if not is_url(location):
        from retentive.state import read_manifest
        from retentive.state.remote import local_path

        folder = local_path(location)
        read_manifest(folder)  # a missing or foreign folder is an error now, not after the trials
        yield folder
        return
    from retentive.state.remote import check_reachable, fetch_state

    url = _url(location)
    check_reachable(url, write=False)
    fetched = Path(tmp) / f"input-{uuid.uuid4().hex[:12]}"
    try:
        yield fetch_state(url, fetched)
    finally:
        shutil.rmtree(fetched, ignore_errors=True)
        with contextlib.suppress(OSError):
            Path(tmp).rmdir()  # only if the fetch was all it held


def promote(
    winner_folder: Location,
    output_location: Path | str,
    manifest_extra: dict[str, Any],
    extra_files: dict[str, bytes],
) -> Path | str:
    """Publish the winning trial's state folder at ``output_location``, atomically.

    The winner is copied into a staging folder (``manifest_extra`` merged into its manifest,
    ``extra_files`` written beside the payloads). A local output gets it by one rename under the
    target's lock, so it appears whole or not at all; a URL output gets it through
    :func:`retentive.state.remote.publish_state`, committed only while the URL still holds no state
    (a state committed there meanwhile is never replaced: :class:`StateConflictError`).
    """
    from retentive.state.format import _fsync_dir, check_output_folder
    from retentive.state.locking import OutputLock
    from retentive.state.staging import discarded_on_failure, new_staging_folder, remove_stale_staging

    if isinstance(output_location, str) and is_url(output_location):
        from retentive.state.remote import publish_state

        staging = Path(winner_folder).parent / f"promote-{uuid.uuid4().hex[:12]}"
        try:
            _stage(winner_folder, staging, manifest_extra, extra_files)
            publish_state(staging, output_location, expect=None)  # a job's output URL must still be empty
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return output_location
    target = Path(output_location)
    with OutputLock(target):
        check_output_folder(target, None)
        remove_stale_staging(target)
        with discarded_on_failure(new_staging_folder(target), target, "promoting the winning trial to") as staging:
            _stage(winner_folder, staging, manifest_extra, extra_files)
            os.rename(staging, target)
            _fsync_dir(target.parent)
    return target


def _stage(
    winner_folder: Location, staging: Path, manifest_extra: dict[str, Any], extra_files: dict[str, bytes]
) -> None:
    """Copy the winner into ``staging`` with the search's record in its manifest, durably."""
    import json

    from retentive.state.format import MANIFEST, _fsync_dir

    shutil.copytree(winner_folder, staging)
    manifest_path = staging / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest.update(manifest_extra)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    for name, data in extra_files.items():
        (staging / name).write_bytes(data)
    for path in staging.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(staging)
