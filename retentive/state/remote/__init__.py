"""State folders at URLs (``s3://`` and any fsspec filesystem), crash-safe for readers.

:func:`fetch_state` downloads a URL's committed state into a local folder, verified;
:func:`publish_state` uploads a finished local state folder as the URL's new committed version,
written under ``versions/`` with a pointer object as the commit point, replaced by
compare-and-swap (:mod:`~retentive.state.remote.layout`); :func:`rollback_url` moves the pointer
back one version; :func:`check_reachable` probes a URL before any training;
:class:`~retentive.state.remote.locations.StateLocations` gives an updater local stand-ins for its
state URLs. ``file://`` locations are local paths (:func:`is_url` is false).
"""

from retentive.state.remote.filesystem import MissingExtraError, is_url, local_path
from retentive.state.remote.layout import fetch_state, publish_state
from retentive.state.remote.probe import check_reachable
from retentive.state.remote.rollback import rollback_url

__all__ = [
    "MissingExtraError",
    "check_reachable",
    "fetch_state",
    "is_url",
    "local_path",
    "publish_state",
    "rollback_url",
]
