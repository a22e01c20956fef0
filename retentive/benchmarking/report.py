"""Aggregate runs over seeds: mean ± std tables, CSV and JSON files, mean accuracy matrices."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from retentive.benchmarking.results import RunResult

#: metric key -> (column title, shown in percent)
METRICS: dict[str, tuple[str, bool]] = {
    "average_accuracy": ("ACC %", True),
    "micro_average_accuracy": ("micro ACC %", True),
    "forgetting": ("forgetting %", True),
    "bwt": ("BWT %", True),
    "fwt": ("FWT %", True),
}
RUNTIME: dict[str, tuple[str, bool]] = {
    "mean_update_seconds": ("s/update", False),
    "samples_per_second": ("samples/s", False),
    "peak_rss_mb": ("peak RSS MB", False),
    "total_seconds": ("run s", False),
}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    if not values:
        raise ValueError("mean_std of no values")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@dataclass
class SummaryRow:
    """One (scenario, view, method, order) group over its seeds."""

    scenario: str
    view: str
    method: str
    order: str
    seeds: list[int]
    stats: dict[str, tuple[float, float]]
    mean_matrix: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        flat: dict[str, Any] = {
            "scenario": self.scenario,
            "view": self.view,
            "method": self.method,
            "order": self.order,
            "seeds": self.seeds,
            "n": len(self.seeds),
        }
        for key, (mean, std) in self.stats.items():
            flat[f"{key}_mean"] = mean
            flat[f"{key}_std"] = std
        flat["mean_matrix"] = self.mean_matrix
        return flat


def summarize_runs(runs: Sequence[RunResult]) -> list[SummaryRow]:
    """Group runs by scenario, view, method and order (in first-seen order) and aggregate."""
    groups: dict[tuple[str, str, str, str], list[RunResult]] = {}
    for run in runs:
        for view in run.views:
            groups.setdefault((run.scenario, view, run.method, run.order), []).append(run)
    rows = []
    for (scenario, view, method, order), members in groups.items():
        stats: dict[str, tuple[float, float]] = {}
        for key in METRICS:
            values = [m.views[view].metrics[key] for m in members if key in m.views[view].metrics]
            if values:
                stats[key] = mean_std(values)
        for key in RUNTIME:
            stats[key] = mean_std([m.runtime()[key] for m in members])
        # Chunk j is the same chunk in every seed only for the same order; mean the matrices as given.
        matrix = torch.tensor([m.views[view].matrix for m in members], dtype=torch.float64).mean(dim=0)
        rows.append(SummaryRow(scenario, view, method, order, [m.seed for m in members], stats, matrix.tolist()))
    return rows


def _cell(stats: dict[str, tuple[float, float]], key: str, percent: bool, n: int) -> str:
    if key not in stats:
        return "-"
    mean, std = stats[key]
    scale = 100.0 if percent else 1.0
    digits = 2 if percent or abs(mean) < 100 else 0
    text = f"{scale * mean:.{digits}f}"
    return text + (f" ± {scale * std:.{digits}f}" if n > 1 else "")


def format_table(rows: Sequence[SummaryRow], markdown: bool = False) -> str:
    """A fixed-width (or Markdown) table, one line per group, mean ± std over seeds."""
    columns = {**METRICS, **RUNTIME}
    header = ["scenario", "view", "method", "order", "seeds"] + [title for title, _ in columns.values()]
    body = [
        [r.scenario, r.view, r.method, r.order, str(len(r.seeds))]
        + [_cell(r.stats, key, percent, len(r.seeds)) for key, (_, percent) in columns.items()]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(line) + " |" for line in body])
    widths = [max(len(str(x)) for x in column) for column in zip(header, *body)]

    def fmt(line: Sequence[object]) -> str:
        return "  ".join(str(x).rjust(w) if i >= 5 else str(x).ljust(w) for i, (x, w) in enumerate(zip(line, widths)))

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(line) for line in body])


def write_runs_csv(path: str | os.PathLike[str], runs: Sequence[RunResult]) -> Path:
    """One line per run and view: its metrics and cost."""
    target = Path(path)
    fields = ["scenario", "view", "method", "order", "seed", "chunk_order", *METRICS, *RUNTIME, "total_update_seconds"]
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for run in runs:
            for view, result in run.views.items():
                line: dict[str, Any] = {
                    "scenario": run.scenario,
                    "view": view,
                    "method": run.method,
                    "order": run.order,
                    "seed": run.seed,
                    "chunk_order": " ".join(map(str, run.chunk_order)),
                }
                line.update({key: result.metrics.get(key, "") for key in METRICS})
                line.update(run.runtime())
                writer.writerow(line)
    return target


def write_summary_csv(path: str | os.PathLike[str], rows: Sequence[SummaryRow]) -> Path:
    """One line per group: mean and std of every metric over its seeds."""
    target = Path(path)
    keys = [*METRICS, *RUNTIME]
    fields = ["scenario", "view", "method", "order", "n"] + [f"{k}_{s}" for k in keys for s in ("mean", "std")]
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row.to_dict())
    return target


def write_json(
    path: str | os.PathLike[str], runs: Sequence[RunResult], rows: Sequence[SummaryRow], settings: dict[str, Any]
) -> Path:
    """Everything: the settings, every run (matrices, per-update cost) and the summary."""
    target = Path(path)
    payload = {"settings": settings, "runs": [r.to_dict() for r in runs], "summary": [r.to_dict() for r in rows]}
    target.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return target


def read_runs(path: str | os.PathLike[str]) -> list[RunResult]:
    """The runs of a ``results.json`` written by :func:`write_json`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [RunResult.from_dict(run) for run in data["runs"]]
