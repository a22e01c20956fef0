"""The record of a search: Renate's ``hpo.csv`` (one row per reported result, every update's
search appended under its ``update_id``) and the summary kept in the manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HPO_FILE = "hpo.csv"  # Renate's name, in the state folder
MANIFEST_KEY = "search"


@dataclass
class TrialRecord:
    """One trial: its hyperparameters, every result it reported, and how it ended."""

    trial_id: int
    config: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    status: str = "InProgress"

    def best(self, metric: str, mode: str) -> float | None:
        values = [float(r[metric]) for r in self.results if r.get(metric) is not None]
        values = [v for v in values if v == v]  # drop NaN
        if not values:
            return None
        return max(values) if mode == "max" else min(values)


def _rows(update_id: int, trials: Sequence[TrialRecord], metric: str) -> list[dict[str, Any]]:
    rows = []
    for trial in trials:
        for result in trial.results:
            row: dict[str, Any] = {
                "update_id": update_id,
                "trial_id": trial.trial_id,
                "epoch": result.get("epoch"),
                metric: result.get(metric),
                "st_worker_time": result.get("st_worker_time"),
                "status": trial.status,
            }
            row.update({f"config_{key}": value for key, value in trial.config.items()})
            rows.append(row)
    return rows


def read_history(state_folder: str | os.PathLike[str] | None) -> list[dict[str, str]]:
    """The ``hpo.csv`` rows an input state carries (none for a first chunk or a plain update)."""
    if state_folder is None:
        return []
    path = Path(state_folder) / HPO_FILE
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def next_update_id(history: Sequence[Mapping[str, Any]]) -> int:
    ids = [int(row["update_id"]) for row in history if str(row.get("update_id", "")).strip()]
    return max(ids) + 1 if ids else 0


def hpo_csv(history: Sequence[Mapping[str, Any]], trials: Sequence[TrialRecord], metric: str) -> bytes:
    """The new ``hpo.csv``: the input state's rows, then this search's under the next update id."""
    rows = [dict(r) for r in history] + _rows(next_update_id(history), trials, metric)
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def manifest_record(
    trials: Sequence[TrialRecord], winner: TrialRecord, metric: str, mode: str, scheduler: str, csv_bytes: bytes
) -> dict[str, Any]:
    """What the promoted state's manifest says about the search that chose it."""
    return {
        MANIFEST_KEY: {
            "metric": metric,
            "mode": mode,
            "scheduler": scheduler,
            "winner": {"trial_id": winner.trial_id, "config": winner.config, metric: winner.best(metric, mode)},
            "trials": [
                {"trial_id": t.trial_id, "status": t.status, "config": t.config, metric: t.best(metric, mode)}
                for t in trials
            ],
            "hpo_csv": {"name": HPO_FILE, "sha256": hashlib.sha256(csv_bytes).hexdigest(), "bytes": len(csv_bytes)},
        }
    }
