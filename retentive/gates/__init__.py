"""Release gates: a candidate state is promoted only if it passes criteria on held-out data.

    from retentive.gates import Gate, MaxDrop, MinNewAccuracy
    gate = Gate([MaxDrop(points=2.0), MinNewAccuracy(0.9)], holdout=0.1)
    updater.update(chunk, gate=gate)   # GateRejected if it fails: the current version keeps serving

One concept per module: :mod:`~retentive.gates.criteria` (what must hold),
:mod:`~retentive.gates.heldout` (the data it is measured on), :mod:`~retentive.gates.measures`
(the measuring), :mod:`~retentive.gates.report` (the outcome), :mod:`~retentive.gates.gate` (the
three together), :mod:`~retentive.gates.transaction` (an update under a gate).
"""

from retentive.gates.criteria import (
    Criterion,
    Custom,
    MaxDrop,
    MaxNegativeFlipRate,
    MinNewAccuracy,
    Verdict,
    criteria_from,
)
from retentive.gates.errors import GateConfigError, GateRejected
from retentive.gates.gate import Gate
from retentive.gates.heldout import HeldOut, split_chunk
from retentive.gates.measures import ChunkMeasure, Measures, measure
from retentive.gates.report import PROMOTE, REJECT, GateReport

__all__ = [
    "PROMOTE",
    "REJECT",
    "ChunkMeasure",
    "Criterion",
    "Custom",
    "Gate",
    "GateConfigError",
    "GateRejected",
    "GateReport",
    "HeldOut",
    "MaxDrop",
    "MaxNegativeFlipRate",
    "Measures",
    "MinNewAccuracy",
    "Verdict",
    "criteria_from",
    "measure",
    "split_chunk",
]
