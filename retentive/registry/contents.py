"""What one update's run holds, as plain data: parameters, metric series, tags and JSON documents.

Kept apart from the MLflow client so that the mapping is one readable place and costs no import:
the accuracy matrix becomes one series per chunk (``accuracy/chunk_<j>``, step = update index, so
MLflow draws each chunk's curve), its rows' means ``average_accuracy``, and the whole matrix, the
gate's report and the lineage are stored as JSON next to them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from retentive.registry.base import CHALLENGER, CHAMPION, UpdateRecord

#: MLflow's limits: a parameter's value, a tag's value (longer ones are cut, with a marker)
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 5000

#: the tags retentive sets on runs and registered versions, to find them again
CANDIDATE_TAG = "retentive.candidate"
PARENT_TAG = "retentive.parent"
STATE_TAG = "retentive.state"
DECISION_TAG = "retentive.decision"
GATE_TAG = "retentive.gate"

#: (key, value, step)
Point = tuple[str, float, int]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted names; every value as text (MLflow's parameters are text)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[name] = _cut(text, MAX_PARAM_LENGTH)
    return flat


def metric_points(record: UpdateRecord) -> list[Point]:
    """Every number of the record as (key, value, step); non-finite values are left out, since a
    tracking store cannot compare them (they stay in the JSON documents)."""
    last = max(len(record.accuracy_matrix) - 1, 0)
    points: list[Point] = []
    for step, row in enumerate(record.accuracy_matrix):
        points += [(f"accuracy/chunk_{chunk}", float(value), step) for chunk, value in enumerate(row)]
        if len(row):
            points.append(("average_accuracy", sum(float(v) for v in row) / len(row), step))
    if record.forgetting is not None:
        points.append(("forgetting", float(record.forgetting), last))
    points += [(f"flips/{name}", float(value), last) for name, value in record.flip_rates.items()]
    points += [(name, float(value), last) for name, value in record.metrics.items()]
    return [point for point in points if math.isfinite(point[1])]


def decision(record: UpdateRecord) -> str:
    return CHAMPION if record.promoted else CHALLENGER


def tags(record: UpdateRecord) -> dict[str, str]:
    """The tags of the run and of its registered version: the home's ids, the state, the decision."""
    gate = "none" if record.gate_report is None else ("passed" if record.promoted else "failed")
    found = {
        CANDIDATE_TAG: record.candidate,
        STATE_TAG: record.state_url,
        DECISION_TAG: decision(record),
        GATE_TAG: gate,
    }
    if record.parent is not None:
        found[PARENT_TAG] = record.parent
    return {name: _cut(value, MAX_TAG_LENGTH) for name, value in found.items()}


def documents(record: UpdateRecord) -> dict[str, Any]:
    """The run's JSON artifacts by path in the run (the gate's report only when there was a gate);
    ``state/state.json`` points at the candidate's state, and ``state/`` is its registered source."""
    found: dict[str, Any] = {
        "accuracy_matrix.json": [list(map(float, row)) for row in record.accuracy_matrix],
        "lineage.json": dict(record.lineage),
        "state/state.json": {"candidate": record.candidate, "url": record.state_url, "parent": record.parent},
    }
    if record.gate_report is not None:
        found["gate_report.json"] = dict(record.gate_report)
    return found
