"""A gated update, from the updater's side: prepare before training, judge after it.

:meth:`GatedUpdate.begin` runs before anything trains: it checks that the gate has held-out data
for this chunk, holds back the chunk's share (``holdout=``, seeded per update) and keeps a frozen
copy of the current model. :meth:`GatedUpdate.judge` runs after the fit, before the state is
written: it measures the candidate against that copy on every held-out chunk, and the report goes
into the candidate's manifest. What happens to the candidate then is the home's: promoted if it
passed, else kept as the challenger while the current version keeps serving.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn
from torch.utils.data import Dataset

from retentive.gates.errors import GateConfigError
from retentive.gates.gate import Gate
from retentive.gates.heldout import split_chunk
from retentive.gates.report import GateReport
from retentive.streams import Purpose, stream_seed

if TYPE_CHECKING:
    from retentive.gates.heldout import HeldOut


@dataclass
class GatedUpdate:
    """One update under a gate: the data to train on and the current model to compare with."""

    gate: Gate
    train_dataset: Dataset
    current: nn.Module | None
    report: GateReport | None = None

    @classmethod
    def begin(
        cls, gate: Gate, train_dataset: Dataset, model: nn.Module, heldout: HeldOut, update: int, seed: int, route: int
    ) -> GatedUpdate:
        """Check the gate against this update, split off the held-out share, freeze the current model.

        ``update`` counts the updates done before this one (0: there is no current model yet).
        """
        if not isinstance(gate, Gate):
            raise GateConfigError(f"gate= takes a retentive.gates.Gate, got {type(gate).__name__}")
        if gate.holdout is not None:
            train_dataset, held = split_chunk(
                train_dataset, gate.holdout, stream_seed(seed, update, Purpose.HOLDOUT), route
            )
            heldout.add(str(update), held)
        current = copy.deepcopy(model).eval() if update > 0 else None
        return cls(gate, train_dataset, current)

    @property
    def passed(self) -> bool:
        """Whether the candidate passed (False until judged)."""
        return self.report is not None and self.report.passed

    def judge(self, candidate: nn.Module, heldout: HeldOut) -> GateReport:
        """Measure the trained candidate against the current model; the report is kept here too."""
        self.report = self.gate.evaluate(candidate, self.current, heldout)
        self.current = None  # the copy is no longer needed
        return self.report
