"""Release gates: criteria against hand-built measures, the measuring against fixed classifiers,
the held-out split, the report, and every way of stating a gate wrongly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from retentive.data.tensors import TensorChunk
from retentive.gates import (
    ChunkMeasure,
    Custom,
    Gate,
    GateConfigError,
    HeldOut,
    MaxDrop,
    MaxNegativeFlipRate,
    Measures,
    MinNewAccuracy,
    criteria_from,
    measure,
    split_chunk,
)
from retentive.gates.recording import accuracy_matrix


def _measures(current: float | None = 0.9) -> Measures:
    chunks = (
        ChunkMeasure("0", 100, candidate=0.85, current=current, negative_flip_rate=None),
        ChunkMeasure("1", 100, candidate=0.70, current=None if current is None else 0.75, negative_flip_rate=None),
        ChunkMeasure("2", 50, candidate=0.60, current=None if current is None else 0.20, negative_flip_rate=None),
    )
    return Measures(chunks, negative_flip_rate=None if current is None else 0.07)


def test_max_drop_reads_the_worst_earlier_chunk_in_points():
    verdict = MaxDrop(points=4.0).check(_measures())
    assert verdict.value == pytest.approx(5.0) and not verdict.passed and "chunk 0" in verdict.detail
    assert MaxDrop(points=5.0).check(_measures()).passed  # the new chunk's gain is not a drop on an earlier one
    first = MaxDrop(points=0.0).check(_measures(current=None))
    assert first.passed and first.value is None


def test_min_new_accuracy_and_negative_flip_rate():
    assert MinNewAccuracy(0.6).check(_measures()).passed
    assert not MinNewAccuracy(0.61).check(_measures()).passed
    assert MaxNegativeFlipRate(0.07).check(_measures()).passed
    assert not MaxNegativeFlipRate(0.05).check(_measures()).passed
    assert MaxNegativeFlipRate(0.0).check(_measures(current=None)).passed


def test_custom_criteria_and_names():
    def new_beats_current(m: Measures) -> bool:
        return m.new_chunk.candidate > (m.new_chunk.current or 0.0)

    verdict = Custom(new_beats_current).check(_measures())
    assert verdict.criterion == "new_beats_current" and verdict.passed
    assert not Custom(lambda m: 0.0, name="zero").check(_measures()).passed
    with pytest.raises(GateConfigError, match="callable"):
        Custom(3)  # type: ignore[arg-type]


def test_criteria_from_a_config_section():
    criteria = criteria_from(
        {"max_drop": 2, "min_new_accuracy": 0.9, "max_negative_flip_rate": 0.05, "custom": ["json:loads"]}
    )
    assert [c.name for c in criteria] == ["max_drop", "min_new_accuracy", "max_negative_flip_rate", "loads"]
    with pytest.raises(GateConfigError, match=r"unknown gate criterion 'max_dorp'; known: custom, max_drop"):
        criteria_from({"max_dorp": 2})
    with pytest.raises(GateConfigError, match=r"'min_new_accuracy' must lie in \[0, 1\], got 90"):
        criteria_from({"min_new_accuracy": 90})
    with pytest.raises(GateConfigError, match="needs a number"):
        criteria_from({"max_drop": "two"})
    with pytest.raises(GateConfigError, match="cannot be imported"):
        criteria_from({"custom": "no_such_module_here:rule"})


def test_a_gate_is_refused_when_built_without_held_out_data_or_criteria():
    with pytest.raises(GateConfigError, match="a gate needs held-out data"):
        Gate({"max_drop": 2})
    with pytest.raises(GateConfigError, match="at least one criterion"):
        Gate({}, holdout=0.1)
    with pytest.raises(GateConfigError, match="either holdout= or data="):
        Gate({"max_drop": 2}, holdout=0.1, data=[_chunk(4)])
    with pytest.raises(GateConfigError, match=r"holdout must be a share of the chunk in \(0, 1\)"):
        Gate({"max_drop": 2}, holdout=1.5)
    with pytest.raises(GateConfigError, match="not a gate criterion"):
        Gate(["max_drop"], holdout=0.1)  # type: ignore[list-item]


def _chunk(n: int, offset: int = 0) -> TensorChunk:
    x = torch.arange(offset, offset + n, dtype=torch.float32).unsqueeze(1)
    return TensorChunk(x, torch.arange(offset, offset + n) % 2)


def test_split_chunk_is_seeded_disjoint_and_complete():
    chunk = _chunk(20)
    train, held = split_chunk(chunk, 0.25, seed=7, task_id=3)
    again, held_again = split_chunk(chunk, 0.25, seed=7, task_id=3)
    _, other = split_chunk(chunk, 0.25, seed=8, task_id=3)
    assert len(held) == 5 and len(train) == 15
    assert torch.equal(held.inputs, held_again.inputs) and not torch.equal(held.inputs, other.inputs)
    values = sorted(held.inputs.flatten().tolist() + train.inputs.flatten().tolist())  # type: ignore[attr-defined]
    assert values == list(range(20))
    assert held.task_ids is not None and set(held.task_ids.tolist()) == {3}
    generic_train, generic_held = split_chunk(torch.utils.data.TensorDataset(chunk.inputs, chunk.targets), 0.25, 7, 0)
    assert torch.equal(generic_held.inputs, held.inputs) and len(generic_train) == 15
    with pytest.raises(ValueError, match="at least 2"):
        split_chunk(_chunk(1), 0.5, 0, 0)


def test_held_out_sets_round_trip_through_a_state_dict():
    store = HeldOut()
    store.add("0", _chunk(3))
    store.add("1", _chunk(2, offset=10))
    copy = HeldOut()
    copy.load_state_dict(store.state_dict())
    assert [name for name, _ in copy] == ["0", "1"]
    assert torch.equal(copy.sets["1"].inputs, store.sets["1"].inputs)


def test_accuracy_rows_travel_with_the_held_out_record_and_old_records_still_load():
    store = HeldOut()
    assert not store.stored()
    store.add_row([0.9])  # a data= gate stores no set, but its rows are kept
    assert store.stored() and store.state_dict() == {"accuracy_rows": [[0.9]]}
    store.add("0", _chunk(3))
    store.add_row([0.8, 0.95])
    back = HeldOut()
    back.load_state_dict(store.state_dict())
    assert back.rows == [[0.9], [0.8, 0.95]] and [name for name, _ in back] == ["0"]
    copied = back.copy()
    copied.add_row([0.5, 0.5, 0.5])  # a rejected update's row goes with its copy, not the original
    assert len(back.rows) == 2
    old = HeldOut()
    old.load_state_dict({"0": {"inputs": torch.zeros(2, 1), "targets": torch.zeros(2).long()}})  # before rows
    assert old.rows == [] and len(old) == 1


def test_the_accuracy_matrix_and_its_forgetting_by_hand():
    matrix, forgetting = accuracy_matrix([[0.9], [0.7, 0.8], [0.6, 0.85, 0.95]])
    assert matrix == [[0.9], [0.7, 0.8], [0.6, 0.85, 0.95]]
    # chunk 0: best 0.9, now 0.6 -> 0.3; chunk 1: best 0.8, now 0.85 -> -0.05; mean 0.125
    assert forgetting == pytest.approx(0.125)
    assert accuracy_matrix([[0.9]]) == ([[0.9]], 0.0)
    assert accuracy_matrix([]) == ([], None)
    assert accuracy_matrix([[0.9, 0.8, 0.7]])[1] is None  # gating began late: no square to read it off


class _Threshold(nn.Module):
    """Predicts class 1 when x > t: fixed, so its accuracies are known by hand."""

    def __init__(self, t: float) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.tensor(t), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one = (x[:, 0] > self.t).float()
        return torch.stack([1 - one, one], dim=1)


def test_measure_counts_accuracies_and_negative_flips_by_hand():
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    chunk = TensorChunk(x, torch.tensor([0, 0, 1, 1]))
    current, candidate = _Threshold(1.5), _Threshold(0.5)  # candidate gets x=1 wrong, all else right
    measures = measure(candidate, current, [("old", chunk), ("new", chunk)])
    old = measures.chunks[0]
    assert (old.candidate, old.current, old.negative_flip_rate) == (0.75, 1.0, 0.25)
    assert measures.negative_flip_rate == 0.25 and measures.new_chunk.chunk == "new"
    assert measures.drops_in_points() == {"old": pytest.approx(25.0)}
    first = measure(candidate, None, [("new", chunk)])
    assert first.negative_flip_rate is None and first.new_chunk.current is None


def test_gate_report_is_json_with_one_summary_line():
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    chunk = TensorChunk(x, torch.tensor([0, 0, 1, 1]))
    gate = Gate([MaxDrop(10.0), MinNewAccuracy(0.5)], data={"a": chunk, "b": chunk})
    report = gate.evaluate(_Threshold(0.5), _Threshold(1.5), HeldOut())
    data = json.loads(json.dumps(report.as_dict()))
    assert data["decision"] == "reject" and data["passed"] is False
    assert [c["chunk"] for c in data["chunks"]] == ["a", "b"]
    assert data["criteria"][0] == {
        "criterion": "max_drop",
        "limit": 10.0,
        "value": pytest.approx(25.0),
        "passed": False,
        "detail": "largest drop on chunk a",
    }
    assert data["criteria"][1]["passed"] is True and data["seconds"] >= 0
    line = report.summary()
    assert "\n" not in line and line.startswith("gate: reject") and "max_drop 25 (limit 10" in line
    assert gate.evaluate(_Threshold(1.5), _Threshold(1.5), HeldOut()).decision == "promote"
