"""An update's decision, mirrored into a model registry (:mod:`retentive.registry`).

The home decides and the registry follows: the registry is checked before anything trains (an
unreachable server is one clear :class:`~retentive.errors.RegistryError`, not a lost update),
and once the home has committed the decision, the candidate is recorded as one run and one
registered version, aliased ``champion`` if it was promoted and ``challenger`` if a gate
rejected it. A registry that fails after the home committed does not undo the commit: it warns,
naming the version it could not record.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from retentive.errors import RegistryError
from retentive.evaluation import forgetting
from retentive.registry import Registry, UpdateRecord, record_decision

if TYPE_CHECKING:
    from retentive.gates.report import GateReport
    from retentive.registry import RegisteredUpdate
    from retentive.updaters.host import UpdaterHost


class RegistryNotRecorded(UserWarning):
    """The home committed a decision that the registry could not record (see its message)."""


def _version(updater: UpdaterHost, kept: str | None) -> tuple[str | None, str]:
    """The version id a decision concerns and where its state lies: in a home (or at a URL), the
    kept challenger ``kept`` or else the current version; a single folder is its own version."""
    locations = updater.state_locations
    if locations.output_url is None:
        folder = str(updater.output_state_folder)
        return Path(folder).name, folder
    version = kept if kept is not None else locations.expected_version
    return version, f"{locations.output_url}/versions/{version}"


@dataclass
class RegistryRecording:
    """One update's registry: checked before training, written once the home has decided."""

    registry: Registry
    parent: str | None

    @classmethod
    def begin(cls, registry: Registry, updater: UpdaterHost) -> RegistryRecording:
        """Check ``registry`` now, before anything trains; remember the version the update builds on."""
        if not isinstance(registry, Registry):
            raise RegistryError(
                f"registry= takes a retentive.registry.Registry (e.g. MlflowRegistry), got {registry!r}"
            )
        if updater.output_state_folder is None:
            raise RegistryError("registry= records the state this update writes, but no output_state_folder was given")
        registry.check()
        return cls(registry, updater.state_locations.expected_version)

    def record(self, updater: UpdaterHost, candidate: str | None, report: GateReport | None) -> RegisteredUpdate | None:
        """Record the committed decision: ``candidate`` is the kept challenger's version id, or
        ``None`` for a promoted state (the home's new current version, or the output folder)."""
        promoted = candidate is None
        version, state_url = _version(updater, candidate)
        if version is None:  # a home always has a current version once a state was published
            return None
        metrics: dict[str, float] = {}
        flips: dict[str, float] = {}
        if report is not None:
            metrics = {"gate/seconds": report.seconds, "gate/new_chunk_accuracy": report.measures.new_chunk.candidate}
            if report.measures.negative_flip_rate is not None:
                flips["nfr"] = report.measures.negative_flip_rate
        matrix, forgetting = accuracy_matrix(updater.heldout.rows if report is not None else [])
        record = UpdateRecord(
            candidate=version,
            state_url=state_url,
            promoted=promoted,
            parent=self.parent,
            hyperparameters={"updater": type(updater).__name__, "seed": updater.seed, **updater.hyperparameters},
            accuracy_matrix=matrix,
            forgetting=forgetting,
            flip_rates=flips,
            gate_report=None if report is None else report.as_dict(),
            lineage=_lineage(updater),
            metrics=metrics,
        )
        try:
            return record_decision(self.registry, record)
        except Exception as error:  # the home's commit stands; the registry is told again by hand
            warnings.warn(
                f"the model home committed version {version} ({'promoted' if promoted else 'kept as the challenger'}), "
                f"but the registry could not record it: {error}",
                RegistryNotRecorded,
                stacklevel=2,
            )
            return None


def accuracy_matrix(rows: Sequence[Sequence[float]]) -> tuple[list[list[float]], float | None]:
    """The gates' rows (one per gated update of the served chain, this update's last) and the
    forgetting read off them by :func:`retentive.evaluation.forgetting`; the chunks not yet seen
    when a row was measured count as 0, which no maximum over earlier rows can pick. ``None``
    when the rows do not make a square (e.g. gating began after the first update)."""
    matrix = [[float(value) for value in row] for row in rows]
    if not matrix or len(matrix) != max(len(row) for row in matrix):
        return matrix, None
    square = torch.zeros(len(matrix), len(matrix), dtype=torch.float64)
    for index, row in enumerate(matrix):
        square[index, : len(row)] = torch.tensor(row, dtype=torch.float64)
    return matrix, forgetting(square)


def _lineage(updater: Any) -> dict[str, Any]:
    written = getattr(updater, "_written_lineage", None)
    return dict(written) if isinstance(written, dict) else {}
