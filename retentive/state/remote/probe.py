"""A cheap probe of a state URL before any training: reachable, bucket there, credentials good."""

from __future__ import annotations

import uuid
from typing import Any

from retentive.errors import StateError
from retentive.state.remote.filesystem import explain, open_url, scheme
from retentive.state.remote.layout import MANIFEST, POINTER, holds_state

#: S3 only: fail within seconds on an unreachable endpoint (botocore's default retries take minutes)
_S3_PROBE_CONFIG = {"connect_timeout": 5, "read_timeout": 20, "retries": {"max_attempts": 2}}


def _probe_filesystem(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    options = dict(storage_options or {})
    if scheme(url) in ("s3", "s3a"):
        options.setdefault("config_kwargs", _S3_PROBE_CONFIG)
        options["skip_instance_cache"] = True  # the short timeouts are for the probe alone
    fs, root = open_url(url, options)
    if scheme(url) in ("s3", "s3a"):
        fs.retries = 1  # s3fs's own retries on top of botocore's
    return fs, root


def check_reachable(url: str, write: bool, storage_options: dict[str, Any] | None = None) -> None:
    """Raise :class:`StateError` naming ``url`` unless it can be read (``write=False``: it must hold
    a committed state) or written (``write=True``: a probe object is written and removed again).

    Unreachable hosts, missing buckets and bad credentials all surface here, before any training;
    a failed probe writes nothing.
    """
    fs, root = _probe_filesystem(url, storage_options)
    role = "output" if write else "input"
    bucket = root.split("/", 1)[0]
    try:
        if scheme(url) in ("s3", "s3a"):
            try:  # not fs.exists, which answers False for a denied or unreachable bucket too
                fs.info(bucket)
            except FileNotFoundError:
                raise StateError(f"{role} state {url!r}: the bucket {bucket!r} does not exist") from None
        if not write:
            if not holds_state(fs, root, url):
                raise StateError(
                    f"input state {url!r} holds no retentive state: neither {POINTER} nor {MANIFEST} is there"
                )
            return
        probe = f"{root}/.retentive-probe-{uuid.uuid4().hex[:12]}"
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except StateError:  # already names the URL
        raise
    except Exception as error:
        verb = "written" if write else "read"
        raise StateError(f"{role} state {url!r} cannot be {verb}: {explain(error)}") from error
