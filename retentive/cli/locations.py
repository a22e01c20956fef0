"""``--input-state`` / ``--output-state`` values: a local folder (a Path) or a URL (kept as text).

Mirrors :func:`retentive.state.remote.is_url` and :func:`~retentive.state.remote.local_path`
without importing them (they pull in torch, and parsing the command line must not): any
``scheme://`` but ``file://`` is a URL; ``file:///x`` is the folder ``/x``. ``Path`` would fold
``s3://b/k`` into ``s3:/b/k``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def state_location(text: str) -> Path | str:
    """The argparse type of a state location."""
    if not _SCHEME.match(text):
        return Path(text)
    if text.lower().startswith("file://"):
        return Path(unquote(urlparse(text).path))
    return text.rstrip("/")


def is_local(location: Path | str | None) -> bool:
    return isinstance(location, Path)
