"""The gate's report: what was measured, each criterion's verdict, the decision and its cost.

It is plain JSON (:meth:`GateReport.as_dict`): the home keeps it with the candidate's version, the
registry logs it, and ``retentive update --summary`` writes it, so a rejected candidate can be
looked at later with the numbers that rejected it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from retentive.gates.criteria import Verdict
from retentive.gates.measures import Measures

PROMOTE = "promote"
REJECT = "reject"


@dataclass(frozen=True)
class GateReport:
    """One gate evaluation: the measures, the verdicts, ``decision`` (``"promote"`` or ``"reject"``)
    and the seconds the evaluation took (both models on every held-out chunk, and the criteria)."""

    measures: Measures
    verdicts: tuple[Verdict, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(verdict.passed for verdict in self.verdicts)

    @property
    def decision(self) -> str:
        return PROMOTE if self.passed else REJECT

    @property
    def failed(self) -> tuple[Verdict, ...]:
        return tuple(verdict for verdict in self.verdicts if not verdict.passed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "passed": self.passed,
            "chunks": [
                {
                    "chunk": c.chunk,
                    "samples": c.samples,
                    "candidate_accuracy": c.candidate,
                    "current_accuracy": c.current,
                    "negative_flip_rate": c.negative_flip_rate,
                }
                for c in self.measures.chunks
            ],
            "negative_flip_rate": self.measures.negative_flip_rate,
            "criteria": [verdict.as_dict() for verdict in self.verdicts],
            "seconds": round(self.seconds, 4),
        }

    def summary(self) -> str:
        """One line: the decision and, for each failed criterion, its value against its limit."""
        new = self.measures.new_chunk
        head = f"gate: {self.decision} (new chunk accuracy {100 * new.candidate:.2f}%"
        if self.measures.negative_flip_rate is not None:
            head += f", negative flip rate {100 * self.measures.negative_flip_rate:.2f}%"
        head += f", evaluated in {self.seconds:.3f} s)"
        failed = [_shown(v) for v in self.failed]
        return head + (f"; failed: {', '.join(failed)}" if failed else "")


def _shown(verdict: Verdict) -> str:
    if verdict.limit is None or verdict.value is None:
        return verdict.criterion
    return f"{verdict.criterion} {verdict.value:.4g} (limit {verdict.limit:g}, {verdict.detail})"


def verdicts_of(measures: Measures, criteria: Sequence[Any]) -> tuple[Verdict, ...]:
    """Every criterion's verdict on ``measures``, in the order the criteria were stated."""
    return tuple(criterion.check(measures) for criterion in criteria)
