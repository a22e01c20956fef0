"""A release gate: criteria plus the held-out data they are measured on.

``updater.update(chunk, gate=Gate({"max_drop": 2.0, "min_new_accuracy": 0.9}, holdout=0.1))``
trains a candidate, measures it and the current model on the held-out data of every chunk seen
so far, and promotes it only if every criterion passes. A gate is checked when it is built, so a
wrong one fails before anything trains.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from retentive.gates.criteria import Criterion, criteria_from
from retentive.gates.errors import GateConfigError
from retentive.gates.heldout import HeldOut
from retentive.gates.measures import measure
from retentive.gates.report import GateReport, verdicts_of


class Gate:
    """What a candidate must pass to be promoted, and the held-out data to judge it on.

    Args:
        criteria: :class:`~retentive.gates.criteria.Criterion` objects, or a mapping naming them
            as a config does (``{"max_drop": 2.0, "min_new_accuracy": 0.9,
            "max_negative_flip_rate": 0.05, "custom": "module:function"}``). At least one.
        holdout: hold back this share of each chunk (seeded by the update) from training and keep
            it in the state, so that later gates evaluate on every earlier chunk as well.
        data: or the held-out data the pipeline names, one dataset per chunk seen so far, the new
            chunk's last (a mapping: by chunk name, in order). Nothing is held back or stored.
        batch_size: the evaluation's batch size.
    """

    def __init__(
        self,
        criteria: Sequence[Criterion] | Mapping[str, Any],
        *,
        holdout: float | None = None,
        data: Sequence[Dataset] | Mapping[str, Dataset] | None = None,
        batch_size: int = 1024,
    ) -> None:
        self.criteria = criteria_from(criteria) if isinstance(criteria, Mapping) else list(criteria)
        if not self.criteria:
            raise GateConfigError("a gate needs at least one criterion (max_drop, min_new_accuracy, ...)")
        for criterion in self.criteria:
            if not isinstance(criterion, Criterion):
                raise GateConfigError(f"{criterion!r} is not a gate criterion (it needs a name and check(measures))")
        if holdout is None and data is None:
            raise GateConfigError(
                "a gate needs held-out data: pass holdout=FRACTION to hold back a share of each chunk, "
                "or data=[one held-out dataset per chunk seen so far]"
            )
        if holdout is not None and data is not None:
            raise GateConfigError("pass either holdout= or data= to a gate, not both")
        if holdout is not None and not 0.0 < float(holdout) < 1.0:
            raise GateConfigError(f"holdout must be a share of the chunk in (0, 1), got {holdout!r}")
        if data is not None and not len(data):
            raise GateConfigError("data= names no held-out dataset; it needs one per chunk seen so far")
        self.holdout = None if holdout is None else float(holdout)
        self.data = data
        self.batch_size = int(batch_size)

    def heldout_sets(self, stored: HeldOut) -> list[tuple[str, Dataset]]:
        """The named held-out chunks to measure on, the new chunk's last."""
        if self.data is None:
            return list(stored)
        if isinstance(self.data, Mapping):
            return [(str(name), dataset) for name, dataset in self.data.items()]
        return [(str(index), dataset) for index, dataset in enumerate(self.data)]

    def evaluate(self, candidate: nn.Module, current: nn.Module | None, stored: HeldOut) -> GateReport:
        """Measure both models on the held-out chunks and judge the candidate by every criterion."""
        start = time.perf_counter()
        measures = measure(candidate, current, self.heldout_sets(stored), self.batch_size)
        verdicts = verdicts_of(measures, self.criteria)
        return GateReport(measures, verdicts, time.perf_counter() - start)

    def __repr__(self) -> str:
        source = f"holdout={self.holdout}" if self.holdout is not None else f"data={len(self.data or ())} sets"
        return f"Gate({[c.name for c in self.criteria]}, {source})"
