"""The outcome of one shift test: a score, a p-value, and what they were computed on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ShiftResult:
    """One two-sample test of a query chunk against reference data.

    ``score`` follows Renate's convention (high means shift): ``1 - p_value``. ``shift`` is
    ``p_value < alpha``. ``statistic`` is the test's raw statistic (MMD² for MMD, the largest
    per-feature KS distance for KS, Pearson's chi-square for the label test); ``details`` holds
    what else the test reports (kernel bandwidth, permutations, features tested, classes).
    """

    detector: str
    statistic: float
    p_value: float
    alpha: float
    n_reference: int
    n_query: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return 1.0 - self.p_value

    @property
    def shift(self) -> bool:
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, ``score`` and ``shift`` included."""
        return {**asdict(self), "score": self.score, "shift": self.shift}

    def summary(self) -> str:
        """One line for people: the verdict, then score, p-value and statistic."""
        verdict = "shift detected" if self.shift else "no shift detected"
        return (
            f"{self.detector}: {verdict} at alpha {self.alpha:g} (p-value {self.p_value:.4g}, score "
            f"{self.score:.4f}, statistic {self.statistic:.6g}; {self.n_reference} reference vs "
            f"{self.n_query} query samples)"
        )
