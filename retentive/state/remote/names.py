"""Names read from a remote pointer or manifest, validated before they name anything on disk or at a URL.

A pointer (``current.json``) is data from the store: whoever can write the bucket can write it.
Every name it carries becomes part of a local path (the download folder) and of an object key, so
each is checked first: a version id must be one this library generates (a UTC timestamp and 12
hex digits); an extra file name must be a plain file name (letters, digits, ``.``, ``_``, ``-``; no
separators, no ``..``, no control characters) and none of the names the layout itself uses.
Anything else is a :class:`~retentive.errors.StateError` naming the value, raised before anything
is written.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from retentive.errors import StateError
from retentive.state.format import MANIFEST, PAYLOADS

POINTER = "current.json"
VERSIONS = "versions"
#: the version ids publish_state generates: when the publish began (UTC), then 12 random hex digits
VERSION_ID = re.compile(r"^(?P<stamp>[0-9]{8}T[0-9]{6}Z)-[0-9a-f]{12}$")
#: extra files (a search's hpo.csv): a plain file name, no separators, not starting with a dot
EXTRA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RESERVED = frozenset({*PAYLOADS, MANIFEST, POINTER, VERSIONS})
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def version_id(value: object, where: str) -> str:
    """``value`` if it is a version id this library generates, else :class:`StateError`."""
    if not isinstance(value, str) or not VERSION_ID.match(value):
        raise StateError(
            f"{where} names version {value!r}, which is not a retentive version id "
            "(expected YYYYMMDDTHHMMSSZ-<12 hex digits>); nothing was read or written"
        )
    return value


def version_time(version: str) -> datetime:
    """When the publish that created ``version`` began (UTC), from its id."""
    match = VERSION_ID.match(version)
    if match is None:
        raise ValueError(f"{version!r} is not a retentive version id")
    return datetime.strptime(match.group("stamp"), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def extra_name(value: object, where: str) -> str:
    """``value`` if it is a safe extra file name (see the module), else :class:`StateError`."""
    if not isinstance(value, str) or not EXTRA_NAME.match(value) or value in RESERVED:
        raise StateError(
            f"{where} names the extra file {value!r}, which is not a plain file name "
            f"(letters, digits, '.', '_', '-'; not one of {sorted(RESERVED)}); nothing was read or written"
        )
    return value


def file_entry(value: object, where: str) -> dict[str, object]:
    """A ``{"sha256": ..., "bytes": ...}`` checksum entry, checked."""
    ok = (
        isinstance(value, dict)
        and isinstance(value.get("sha256"), str)
        and bool(SHA256.match(value["sha256"]))
        and isinstance(value.get("bytes"), int)
        and not isinstance(value.get("bytes"), bool)
        and value["bytes"] >= 0
    )
    if not ok:
        raise StateError(
            f"{where} has the checksum entry {value!r}; expected {{'sha256': <64 hex>, 'bytes': <int >= 0>}}"
        )
    return value  # type: ignore[return-value]
