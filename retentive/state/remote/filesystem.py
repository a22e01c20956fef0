"""Which locations are URLs, how their filesystem is opened, and what a remote failure means.

Any ``scheme://`` location except ``file://`` is a URL, opened with fsspec (``s3://`` needs
``pip install 'retentive[s3]'``). ``file://`` locations are local paths: they keep the local
writer's atomic rename and lock (:func:`local_path`). Credentials and endpoints come from the
filesystem's usual sources (for S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_PROFILE``,
``AWS_ENDPOINT_URL`` for an S3-compatible server; fsspec's ``FSSPEC_S3_*`` variables) or from the
``storage_options`` the functions of :mod:`retentive.state.remote` take.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from retentive.errors import RetentiveError, StateError

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
#: the extra that installs each scheme's fsspec backend
EXTRAS = {"s3": "s3", "s3a": "s3"}


class MissingExtraError(RetentiveError, ImportError):
    """A URL's filesystem backend is not installed; the message names the extra to install."""


def scheme(location: str | os.PathLike[str]) -> str | None:
    match = _SCHEME.match(os.fspath(location)) if isinstance(location, (str, os.PathLike)) else None
    return match.group("scheme").lower() if match else None


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a remote state location (``scheme://`` other than ``file://``)."""
    return scheme(location) not in (None, "file")


def local_path(location: str | os.PathLike[str]) -> Path:
    """A local location as a Path: ``file:///x/y`` is ``/x/y``, a path is itself."""
    text = os.fspath(location)
    if scheme(text) == "file":
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise StateError(f"{text!r} names host {parsed.netloc!r}; a file:// state location must be on this machine")
        return Path(unquote(parsed.path))
    return Path(text)


def open_url(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path of ``url`` within it (no trailing slash)."""
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError as error:  # pragma: no cover - fsspec is a core dependency
        raise MissingExtraError(f"state at {url!r} needs fsspec: pip install fsspec") from error
    name = scheme(url) or ""
    try:
        fs, path = url_to_fs(url.rstrip("/"), **(storage_options or {}))
    except ImportError as error:
        extra = EXTRAS.get(name)
        how = f"pip install 'retentive[{extra}]'" if extra else f"install the fsspec backend for {name}://"
        raise MissingExtraError(
            f"state at {url!r} needs the {name}:// filesystem, which is not installed: {how}"
        ) from error
    except ValueError as error:  # fsspec: "Protocol not known"
        known = ", ".join(sorted(set(fsspec.available_protocols()) - {"file", "local"})[:12])
        raise StateError(
            f"{url!r}: fsspec knows no filesystem {name}:// ({error}); known ones include {known}"
        ) from error
    return fs, path.rstrip("/")


def explain(error: BaseException) -> str:
    """What a filesystem error means for the user, in one phrase."""
    names = {klass.__name__ for klass in type(error).__mro__}
    text = " ".join(str(error).split()) or type(error).__name__
    if names & {"NoCredentialsError", "PartialCredentialsError"}:
        return f"no credentials were found ({text}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
    if isinstance(error, PermissionError) or names & {"ClientError"} and "denied" in text.lower():
        return (
            f"access denied ({text}): check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE) and the bucket's permissions"
        )
    if names & {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ClientConnectorError",
        "ConnectionError",
        "ServerTimeoutError",
        "ClientOSError",
    }:
        return f"the server cannot be reached ({text}); check the URL and AWS_ENDPOINT_URL"
    if isinstance(error, FileNotFoundError):
        return f"not found ({text})"
    return f"{type(error).__name__}: {text}"
