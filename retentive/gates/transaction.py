"""An update as a transaction, from the updater's side: prepare before training, decide after it.

:meth:`GatedUpdate.begin` runs before anything trains: it checks that the gate has held-out data
for this chunk, holds back the chunk's share (``holdout=``, seeded per update) and keeps a frozen
copy of the current model. :meth:`GatedUpdate.judge` runs after the fit, before the state is
written: it measures the candidate against that copy on every held-out chunk, and the report goes
into the candidate's manifest. What happens to the candidate then is the home's: promoted if it
passed, else kept as the challenger while the current version keeps serving.
:class:`Transaction` puts the gate and the registry (:mod:`~retentive.gates.recording`) together
around one update.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn
from torch.utils.data import Dataset

from retentive.gates.errors import GateConfigError, GateRejected
from retentive.gates.gate import Gate
from retentive.gates.heldout import split_chunk
from retentive.gates.recording import RegistryRecording
from retentive.gates.report import GateReport
from retentive.state import save_state
from retentive.streams import Purpose, stream_seed

if TYPE_CHECKING:
    from retentive.gates.heldout import HeldOut
    from retentive.registry import Registry
    from retentive.state.locking import OutputLock
    from retentive.updaters.host import UpdaterHost


class UnguardedChunks(UserWarning):
    """Earlier chunks were trained without a held-out share: a ``holdout=`` gate cannot measure them."""


@dataclass
class GatedUpdate:
    """One update under a gate: the data to train on and the current model to compare with."""

    gate: Gate
    train_dataset: Dataset
    current: nn.Module | None
    report: GateReport | None = None

    @classmethod
    def begin(cls, gate: Gate, updater: UpdaterHost, train_dataset: Dataset, update: int, route: int) -> GatedUpdate:
        """Check the gate against this update, split off the held-out share, freeze the current model.

        ``update`` counts the updates done before this one (0: there is no current model yet).
        """
        if not isinstance(gate, Gate):
            raise GateConfigError(f"gate= takes a retentive.gates.Gate, got {type(gate).__name__}")
        if updater.output_state_folder is not None and updater.state_locations.output_url is None:
            raise GateConfigError(
                f"a gated update keeps a rejected candidate beside the serving version, which a single state folder "
                f"cannot: write output_state_folder to a model home (a URL, or a local folder made one with "
                f"retentive.state.home.ModelHome(path).create()), not {str(updater.output_state_folder)!r}"
            )
        current = copy.deepcopy(updater.model).eval() if update > 0 else None
        if gate.holdout is not None:
            if len(updater.heldout) < update:
                warnings.warn(
                    f"the gate measures {len(updater.heldout)} earlier chunk(s) but the state has {update} update(s): "
                    "chunks trained without a held-out share are not protected by it (gate every update from the "
                    "first, or name the held-out data with data=)",
                    UnguardedChunks,
                    stacklevel=3,
                )
            seed = stream_seed(updater.seed, update, Purpose.HOLDOUT)
            train_dataset, held = split_chunk(train_dataset, gate.holdout, seed, route)
            updater.heldout.add(str(update), held)
        return cls(gate, train_dataset, current)

    def judge(self, candidate: nn.Module, heldout: HeldOut) -> GateReport:
        """Measure the trained candidate against the current model; the report is kept here too."""
        self.report = self.gate.evaluate(candidate, self.current, heldout)
        heldout.add_row([chunk.candidate for chunk in self.report.measures.chunks])  # the accuracy matrix's row
        self.current = None  # the copy is no longer needed
        return self.report


def keep_challenger(updater: UpdaterHost, report: GateReport, lock: OutputLock | None) -> tuple[str, str | None]:
    """Keep the rejected candidate in the model home as the challenger, with its report; the
    current version keeps serving. Returns what became of it, in words, and the version id it
    is kept as (``None``: not kept).

    The candidate is written whole as a new version first; only then does one pointer commit
    record it as the challenger, and only while the current version is still the one this update
    read (else :class:`~retentive.errors.StateConflictError`). A kill at any moment leaves the
    current version serving.
    """
    folder, locations = updater.output_state_folder, updater.state_locations
    if folder is None:
        return "nothing was written (no output_state_folder)", None
    if lock is None:  # a data-parallel rank other than 0: rank 0 keeps it
        return "kept by global rank 0 (this rank writes nothing)", None
    home = locations.home
    assert home is not None  # begin() refused a gated update into a single folder
    current = home.current()
    if current is None:  # a challenger is kept beside a serving version; there is none yet
        shutil.rmtree(folder, ignore_errors=True)
        return f"nothing was kept: {home.location} has no serving version yet", None
    try:
        with locations.naming_urls():
            save_state(folder, updater._state(), lock=lock)
            candidate = home.write_candidate(folder)
            kept = home.mark_challenger(candidate, report.as_dict(), expect=locations.expected_version)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    outcome = f"kept as the challenger (version {kept.id}) in {home.location}, which still serves version {current.id}"
    return outcome, kept.id


@dataclass
class Transaction:
    """One update as a transaction: its gate (if any) and its registry (if any), decided once.

    :meth:`begin` runs before training (the registry checked, the gate prepared), :meth:`decide`
    after the fit and before the write, :meth:`promoted` once the new state is committed.
    """

    gated: GatedUpdate | None
    recording: RegistryRecording | None
    train_dataset: Dataset

    @classmethod
    def begin(
        cls,
        updater: UpdaterHost,
        gate: Gate | None,
        registry: Registry | None,
        train_dataset: Dataset,
        update: int,
        route: int,
        lock: OutputLock | None,
    ) -> Transaction:
        # an unreachable registry costs seconds, not an update; only the writing rank records
        recording = None if registry is None or lock is None else RegistryRecording.begin(registry, updater)
        gated = None if gate is None else GatedUpdate.begin(gate, updater, train_dataset, update, route)
        return cls(gated, recording, train_dataset if gated is None else gated.train_dataset)

    def decide(self, updater: UpdaterHost, lock: OutputLock | None) -> None:
        """Judge the candidate; a rejected one is kept as the challenger (and recorded), and
        :class:`~retentive.gates.errors.GateRejected` raised: the current version keeps serving."""
        if self.gated is None:
            return
        updater.gate_report = report = self.gated.judge(updater.model, updater.heldout)
        if report.passed:
            return
        outcome, kept = keep_challenger(updater, report, lock)
        if self.recording is not None and kept is not None:
            self.recording.record(updater, kept, report)
        raise GateRejected(report, outcome)

    def promoted(self, updater: UpdaterHost) -> None:
        """The new state is committed: the registry follows the home (``champion``)."""
        if self.recording is not None:
            self.recording.record(updater, None, updater.gate_report)
