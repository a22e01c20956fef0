"""A promotion or a rollback of a model home, with the registry's ``champion`` following it.

The home knows nothing of registries, and a registry mirrors the home; this is the one place that
moves both (``retentive promote`` / ``retentive rollback --registry URI`` call it)::

    from retentive.registry import open_registry
    from retentive.registry.serving import promote, rollback

    registry = open_registry("http://127.0.0.1:5000", model_name="digits")
    promote(home, "v0004", registry=registry)   # champion -> v0004's version (challenger cleared if it was v0004)
    rollback(home, registry=registry)           # champion -> the version that serves again

The registry is checked before the home changes (an unreachable one costs nothing), and both
versions are looked up by the home's ids (:meth:`~retentive.registry.Registry.version_of`). Once
the home has committed, its commit stands: a registry that then fails, or never recorded the
version, is a :class:`~retentive.gates.recording.RegistryNotRecorded` warning naming the version.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from retentive.errors import RegistryError
from retentive.registry.base import Registry
from retentive.state.home import AT_START

if TYPE_CHECKING:
    from retentive.state.home import ModelHome, Version


def _checked(registry: Registry | None) -> None:
    if registry is None:
        return
    if not isinstance(registry, Registry):
        raise RegistryError(f"registry= takes a retentive.registry.Registry (e.g. MlflowRegistry), got {registry!r}")
    registry.check()


def follow(registry: Registry, candidate: str) -> str | None:
    """Point ``champion`` at the registered version of the home's version ``candidate`` (a
    ``challenger`` on it is cleared); return that version, or ``None`` with a warning when the
    registry cannot (the version was never recorded there, or the registry failed)."""
    from retentive.gates.recording import RegistryNotRecorded

    try:
        version = registry.version_of(candidate)
        if version is None:
            raise RegistryError(f"it has no registered version of {candidate} (updated without --registry?)")
        registry.set_champion(version)
        return version
    except Exception as error:  # the home's commit stands; the registry is told again by hand
        warnings.warn(
            f"version {candidate} serves now, but the registry's champion could not follow: {error}",
            RegistryNotRecorded,
            stacklevel=3,
        )
        return None


def promote(
    home: ModelHome, version: Version | str, *, registry: Registry | None = None, expect: Any = AT_START
) -> Version:
    """:meth:`ModelHome.promote <retentive.state.home.ModelHome.promote>` (``expect`` as it takes
    it), then ``champion`` follows."""
    _checked(registry)
    promoted = home.promote(version, expect=expect)
    if registry is not None:
        follow(registry, promoted.id)
    return promoted


def rollback(home: ModelHome, *, registry: Registry | None = None) -> Version:
    """:meth:`ModelHome.rollback <retentive.state.home.ModelHome.rollback>`, then ``champion``
    follows to the version that serves again."""
    _checked(registry)
    current = home.rollback()
    if registry is not None:
        follow(registry, current.id)
    return current
