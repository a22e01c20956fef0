"""What one benchmark run produced: accuracy matrices per view, metrics, time and memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from retentive.evaluation import summarize


@dataclass
class ViewResult:
    """One evaluation view of a run: ``matrix[i][j]`` = accuracy on test chunk ``j`` after update
    ``i``; ``random_init[j]`` = the untrained model's accuracy on chunk ``j`` (for FWT)."""

    matrix: list[list[float]]
    random_init: list[float]
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, rows: list[Tensor], random_init: Tensor, counts: list[int]) -> ViewResult:
        matrix = torch.stack(rows)
        return cls(
            matrix=matrix.tolist(),
            random_init=random_init.tolist(),
            metrics=summarize(matrix, random_init, counts),
        )


@dataclass
class RunResult:
    """One method on one scenario, one seed and one chunk order, chunk after chunk."""

    scenario: str
    method: str
    seed: int
    order: str
    chunk_order: list[int]
    chunk_names: list[str]
    method_spec: dict[str, Any]
    views: dict[str, ViewResult]
    train_counts: list[int]
    test_counts: list[int]
    update_seconds: list[float]
    samples_per_second: list[float]
    peak_rss_bytes: list[int]
    memory_scope: str
    evaluation_seconds: list[float]
    final_state: str | None
    total_seconds: float

    def runtime(self) -> dict[str, float]:
        """View-independent cost figures of the run."""
        return {
            "mean_update_seconds": sum(self.update_seconds) / len(self.update_seconds),
            "total_update_seconds": sum(self.update_seconds),
            "samples_per_second": sum(self.train_counts) / sum(self.update_seconds),
            "peak_rss_mb": max(self.peak_rss_bytes) / 2**20,
            "total_seconds": self.total_seconds,
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["runtime"] = self.runtime()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        fields = {k: v for k, v in data.items() if k != "runtime"}
        fields["views"] = {name: ViewResult(**view) for name, view in data["views"].items()}
        return cls(**fields)
