"""The gate's two exceptions: a gate stated wrongly (before training), a candidate rejected (after)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retentive.errors import RetentiveError

if TYPE_CHECKING:
    from retentive.gates.report import GateReport


class GateConfigError(RetentiveError, ValueError):
    """A gate was stated wrongly: an unknown criterion, a limit out of range, no held-out data.
    Raised before anything is trained."""


class GateRejected(RetentiveError):
    """The candidate failed its gate: the current version still serves, the candidate is kept as
    the challenger, and :attr:`report` says which criteria failed and by how much."""

    def __init__(self, report: GateReport, outcome: str = "") -> None:
        self.report = report
        #: what became of the candidate (where it is kept as the challenger, or why nowhere)
        self.outcome = outcome
        super().__init__(report.summary() + (f"; {outcome}" if outcome else ""))
