"""Where a job's input state comes from and where its output state goes: the one place that
reads locations.

Today both are local folders. A ``scheme://`` location (``s3://...``) is refused with a clear
error; state at URLs is added here, and only here, by routing these two functions through
:mod:`retentive.state.remote` once it lands.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from retentive.errors import StateError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` names a URL (``scheme://...``) rather than a local path."""
    return bool(_URL.match(str(location)))


def _refuse_url(location: str | os.PathLike[str], what: str) -> None:
    if is_url(location):
        raise StateError(
            f"{what} {str(location)!r} is a URL; URLs are not supported yet: pass a local folder"
        )


def check_output_location(output: str | os.PathLike[str], input_location: str | os.PathLike[str] | None) -> Path:
    """Refuse an output location that cannot be promoted to, before any trial runs."""
    _refuse_url(output, "output_state_url")
    out = Path(output)
    if input_location is not None and out.resolve() == Path(input_location).resolve():
        raise StateError(
            f"output_state_url {str(out)!r} is the input_state_url; a job never modifies its input, "
            "so write the new state to another folder"
        )
    if out.exists():
        raise StateError(f"output_state_url {str(out)!r} already exists; a state folder is never overwritten")
    return out


def localize_input(location: str | os.PathLike[str] | None, tmp: str | os.PathLike[str]) -> Path | None:
    """The input state as a local, verified-readable folder (``None``: the first chunk).

    ``tmp`` is where a remote state would be fetched to; a local folder is used where it is, and
    only ever read.
    """
    if location is None:
        return None
    _refuse_url(location, "input_state_url")
    from retentive.state import read_manifest

    folder = Path(location)
    read_manifest(folder)  # a missing or foreign folder is an error now, not after the trials
    return folder


def promote(
    winner_folder: str | os.PathLike[str],
    output_location: str | os.PathLike[str],
    manifest_extra: dict[str, Any],
    extra_files: dict[str, bytes],
) -> Path:
    """Publish the winning trial's state folder at ``output_location``, atomically.

    The winner is copied into a staging folder beside the target (under the target's lock),
    ``manifest_extra`` is merged into its manifest and ``extra_files`` are written beside the
    payloads; then one rename puts it in place, so the output appears whole or not at all.
    """
    import json

    from retentive.state.format import MANIFEST, _fsync_dir, check_output_folder
    from retentive.state.locking import OutputLock
    from retentive.state.staging import new_staging_folder, remove_stale_staging

    _refuse_url(output_location, "output_state_url")
    target = Path(output_location)
    with OutputLock(target):
        check_output_folder(target, None)
        remove_stale_staging(target)
        staging = new_staging_folder(target)
        try:
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
            os.rename(staging, target)
            _fsync_dir(target.parent)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise StateError(f"promoting the winning trial to {str(target)!r} failed ({error}); nothing was written there") from error
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target
