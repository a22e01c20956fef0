"""What a registry is to retentive: the record of one update, and the calls the updater, the gates
and the model home make on each decision.

The home decides and the registry mirrors: a candidate version of the home is recorded as one run
and one registered version; its alias says what the home decided (``champion`` serves,
``challenger`` is a rejected candidate kept to look at). Nothing here imports a registry client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: the alias of the version that serves (the home's ``current``)
CHAMPION = "champion"
#: the alias of the latest candidate that a gate rejected (kept with its report, not serving)
CHALLENGER = "challenger"


@dataclass(frozen=True)
class UpdateRecord:
    """One update as the registry records it.

    Attributes:
        candidate: the home's id of the candidate version this update wrote.
        state_url: where the candidate's state lies (a folder path or a URL such as ``s3://...``).
        promoted: the decision: True if the candidate became the champion (a passed gate, or an
            update without a gate), False if a gate rejected it (it becomes the challenger).
        parent: the home's id of the version the update started from (None for the first one).
        hyperparameters: the updater's configuration and seed; nested mappings are flattened to
            dotted names.
        accuracy_matrix: row ``i`` holds the accuracies after update ``i`` on chunks ``0..i`` (a
            ragged lower triangle is fine); the last row is this update's.
        forgetting: the average forgetting after this update, if measured.
        flip_rates: prediction flips against the parent (``nfr``, ``pfr``, ``nfi``, ``pfi`` as
            :func:`retentive.flip_metrics` names them).
        gate_report: the gate's report (JSON-serialisable), or None for an update without a gate.
        lineage: the manifest's lineage (parent digest, data fingerprint, versions...), stored as is.
        metrics: further numbers to log (e.g. the gate's evaluation seconds).
    """

    candidate: str
    state_url: str
    promoted: bool
    parent: str | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    accuracy_matrix: Sequence[Sequence[float]] = ()
    forgetting: float | None = None
    flip_rates: Mapping[str, float] = field(default_factory=dict)
    gate_report: Mapping[str, Any] | None = None
    lineage: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredUpdate:
    """Where an update landed in the registry: its run and its registered version."""

    run_id: str
    version: str
    alias: str


@runtime_checkable
class Registry(Protocol):
    """A model registry that mirrors the home's decisions (see :mod:`retentive.registry`)."""

    def check(self) -> None:
        """Raise :class:`~retentive.errors.RegistryError` unless the registry can be written now;
        called before any training, so that an unreachable server costs seconds, not an update."""

    def record_update(self, record: UpdateRecord) -> str:
        """Record one update as one run (parameters, metrics, gate report, the state or a pointer
        to it); return the run's id."""

    def register_candidate(self, record: UpdateRecord, run_id: str) -> str:
        """Register the candidate of ``record`` as a new version of the model, made from the run
        ``run_id``; return the version."""

    def set_champion(self, version: str) -> None:
        """Point ``champion`` at ``version`` (a promotion or a rollback); a ``challenger`` alias
        on the same version is removed, since that version now serves."""

    def set_challenger(self, version: str) -> None:
        """Point ``challenger`` at ``version`` (a rejected candidate, kept to look at)."""

    def aliases(self) -> dict[str, str]:
        """The model's aliases: alias -> version (empty before the first registration)."""

    def version_of(self, candidate: str) -> str | None:
        """The registered version of the home's candidate ``candidate``, or None if not registered
        (so that ``retentive promote`` / ``rollback`` can move the aliases by the home's ids)."""


def record_decision(registry: Registry, record: UpdateRecord) -> RegisteredUpdate:
    """Record an update whose gate (or lack of one) has decided: one run, one registered version,
    and the alias the decision gives it (``champion`` if promoted, else ``challenger``)."""
    run_id = registry.record_update(record)
    version = registry.register_candidate(record, run_id)
    if record.promoted:
        registry.set_champion(version)
        return RegisteredUpdate(run_id, version, CHAMPION)
    registry.set_challenger(version)
    return RegisteredUpdate(run_id, version, CHALLENGER)
