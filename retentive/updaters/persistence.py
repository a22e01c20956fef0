"""The updater's state: restoring a state folder, snapshots for rollback on failure, and writing
the new folder (a mixin of :class:`~retentive.updaters.base.ModelUpdater`).

A failed restore or update puts everything back from a snapshot, so the updater is never left
half-changed; the write is atomic (staged, then renamed, or swapped in for an in-place update).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytorch_lightning.loggers import TensorBoardLogger

from retentive.distributed import broadcast_object
from retentive.errors import StateConflictError, StateError
from retentive.gates.heldout import HeldOut
from retentive.gates.report import GateReport
from retentive.state import MANIFEST, State, check_output_folder, save_state
from retentive.state.concurrency import check_unchanged, manifest_digest, read_versioned
from retentive.state.inplace import is_in_place, swap_in
from retentive.state.interrupts import CommitGuard, UpdateInterrupted
from retentive.state.lineage import ancestors_of, chunk_fingerprint, lineage_record
from retentive.state.locking import OutputLock
from retentive.state.remote.locations import StateLocations
from retentive.state.resume import ResumeSession, discard_checkpoints, update_fingerprint
from retentive.streams import STREAMS_SCHEME
from retentive.updaters.shared_state import check_visible
from retentive.updaters.validation import check_memory_labels

#: manifest entries a state passes on to every state built on it: the record of the samples deleted
#: from its memory (retentive.governance), which neither an update nor a refit undoes
CARRIED_ENTRIES = ("memory_deletions",)

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from retentive.updaters.host import UpdaterHost as _Host
else:
    _Host = object


class PersistenceMixin(_Host):
    """Load, snapshot, put back and save everything an update changes."""

    def _locate_state(
        self,
        input_state_folder: str | os.PathLike[str] | None,
        output_state_folder: str | os.PathLike[str] | None,
        resume: bool,
    ) -> None:
        """The state folders; URLs (s3://...) are probed now and stand in for by local folders
        (:mod:`retentive.state.remote`). A new output folder must not exist yet."""
        self.state_locations = StateLocations(input_state_folder, output_state_folder, resume)
        self.input_state_folder = self.state_locations.input_folder
        self.output_state_folder = self.state_locations.output_folder
        self.in_place = self.output_state_folder is not None and is_in_place(
            self.input_state_folder, self.output_state_folder
        )
        if self.output_state_folder is not None and not self.in_place:
            check_output_folder(self.output_state_folder, self.input_state_folder)
        self.resume = bool(resume)
        #: the version (manifest digest) of the state this updater holds: the one it read, then the
        #: one its last in-place update wrote; an in-place update commits only onto it
        self.state_version: str | None = None

    def _load_input_state(self) -> None:
        """The record of a fresh updater, then the input state folder's, if any (its version
        becomes :attr:`state_version`)."""
        self.effective_precision: str | None = None
        self.updates_done = 0
        self.tasks_seen: dict[str, int] = {}
        self.task_order: list[int | str] = []  # the task of each update, in order (growing models replay it)
        self.chunk_size = 0  # samples in the chunk of the update under way
        self.world_size = 1  # the data-parallel ranks of the last update (recorded in the manifest)
        self.global_rank = 0  # this process's rank in the last update
        self.heldout = HeldOut()  # the held-out share of each chunk a gate held back (retentive.gates)
        if self.input_state_folder is not None:
            with self.state_locations.naming_urls():
                state, self.state_version = read_versioned(self.input_state_folder)
                self._restore(state)
                self._held_lineage = state.manifest.get("lineage")
                self._carried = {key: state.manifest[key] for key in CARRIED_ENTRIES if key in state.manifest}

    def _restore(self, state: State) -> None:
        """Apply a loaded state; if it does not fit, raise StateError and leave everything as it was."""
        backup = self._snapshot()
        try:
            self._apply_state(state, self.input_state_folder)
            check_memory_labels(self.model, self.memory, self.input_state_folder, self.learner.transforms["buffer"])
        except BaseException:
            self._put_back(backup)
            raise

    def _apply_state(self, state: State, folder: Path | None) -> None:
        state = self.migrate_state(state)
        task_order = list(state.learner.get("updater", {}).get("task_order", []))
        try:
            self.adapt_model(task_order)  # a growing model rebuilds its structure before weights load
        except ValueError as error:  # e.g. more columns than the network builds
            raise StateError(f"the state in {str(folder)!r} does not fit this model: {error}") from error
        try:
            self.model.load_state_dict(state.model)
        except Exception as error:
            raise StateError(f"the model in {str(folder)!r} does not fit the model passed in: {error}") from error
        try:
            self.learner.load_extra_state(state.learner["learner"])
            self.memory.load_state_dict(state.memory)
            counters = state.learner["updater"]
            updates_done = int(counters["updates_done"])
            tasks_seen = {str(k): int(v) for k, v in counters["tasks_seen"].items()}
        except Exception as error:  # any malformed payload: the folder does not fit this updater
            raise StateError(
                f"the state in {str(folder)!r} does not fit this updater: {type(error).__name__}: {error}"
            ) from error
        missing = set(self.learner.memory_keys) - set(self.memory.keys)
        if self.memory.keys and missing:
            raise StateError(
                f"the memory in {str(folder)!r} lacks the metadata {sorted(missing)} that this updater's components need"
            )
        self.updates_done, self.tasks_seen, self.task_order = updates_done, tasks_seen, task_order
        self.heldout.load_state_dict(state.learner.get("heldout", {}))

    def _snapshot(self) -> tuple[Any, ...]:
        """Everything an update changes, copied, so that a failure can put it back with :meth:`_put_back`."""
        return (
            copy.deepcopy(self.model.state_dict()),
            self.memory.state_dict(),
            copy.deepcopy(self.learner.extra_state()),
            (self.updates_done, dict(self.tasks_seen), list(self.task_order)),
            self.heldout.copy(),
        )

    def _put_back(self, backup: tuple[Any, ...]) -> None:
        self.model.load_state_dict(backup[0])
        self.memory.load_state_dict(backup[1])
        self.learner.load_extra_state(backup[2])
        self.updates_done, self.tasks_seen, self.task_order = backup[3]
        self.heldout = backup[4]

    def _state(self) -> State:
        return State(
            model={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            learner={
                "learner": self.learner.extra_state(),
                "updater": {
                    "updates_done": self.updates_done,
                    "tasks_seen": dict(self.tasks_seen),
                    "task_order": list(self.task_order),
                },
                **({"heldout": self.heldout.state_dict()} if self.heldout.stored() else {}),
            },
            memory=self.memory.state_dict(),
            manifest={
                "updater": type(self).__name__,
                "hyperparameters": self.hyperparameters,
                "updates_done": self.updates_done,
                "tasks_seen": dict(self.tasks_seen),
                "task_order": list(self.task_order),
                "world_size": self.world_size,
                "effective_precision": self.effective_precision,
                "random_streams": STREAMS_SCHEME,
                "memory": {"size": len(self.memory), "seen": self.memory.seen, "keys": list(self.memory.keys)},
                **self.manifest_entries(),
                **getattr(self, "_carried", {}),
                "lineage": self._lineage(),
            },
        )

    def _begin_lineage(self, train_dataset: Any, update: int, task: int | str) -> None:
        """What this update's manifest records as its lineage (:mod:`retentive.state.lineage`): the
        version it builds on and that version's ancestry, its index and task, the chunk's
        fingerprint; the gate's slot, :attr:`gate_report`, starts empty (a gate fills it before the
        state is written)."""
        previous = getattr(self, "_lineage_inputs", None)
        if previous is not None and previous["parent"] != self.state_version:  # the last update committed
            self._held_lineage = getattr(self, "_written_lineage", None)
        self._lineage_inputs: dict[str, Any] = {
            "parent": self.state_version,
            "ancestors": ancestors_of(getattr(self, "_held_lineage", None), self.state_version),
            "update": update,
            "task_id": task,
            "data": chunk_fingerprint(train_dataset),
        }
        self.gate_report: GateReport | None = None

    def _lineage(self) -> dict[str, Any]:
        inputs = getattr(self, "_lineage_inputs", None) or {
            "parent": self.state_version,
            "ancestors": ancestors_of(getattr(self, "_held_lineage", None), self.state_version),
            "update": self.updates_done,
            "task_id": self.updates_done,
            "data": None,
        }
        record = lineage_record(
            **inputs,
            updater=type(self).__name__,
            config=self.hyperparameters,
            seed=self.seed,
            gate=None if (report := getattr(self, "gate_report", None)) is None else report.as_dict(),
        )
        self._written_lineage = record
        return record

    def _check_unchanged(self, fate: str) -> None:
        """Raise StateConflictError if the in-place folder no longer holds :attr:`state_version`."""
        assert self.output_state_folder is not None and self.state_version is not None
        check_unchanged(
            self.output_state_folder,
            self.state_version,
            f"{self.state_version[:12]} (updates_done {self.updates_done})",
            fate,
        )

    def _interrupt_messages(self) -> tuple[str | None, str | None]:
        """What an interrupt before and after this call's commit means for the output (``None``
        for an output URL, whose publish reports for itself)."""
        if self.state_locations.output_url is not None:
            return None, None
        folder = self.output_state_folder
        if folder is None:
            return "interrupted before the update finished; nothing was written", None
        return (
            f"interrupted before the new state was committed; {str(folder)!r} is unchanged",
            f"interrupted after the new state was committed to {str(folder)!r}; the update is complete",
        )

    def _committed_in_call(self) -> bool:
        """Whether the update() under way has committed a local state (set while signals are held)."""
        return self.state_version != getattr(self, "_version_at_call", self.state_version)

    def _save(self, lock: OutputLock | None) -> None:
        """Write the state folder: the rank holding the lock (rank 0) writes, the others wait for it.

        Every replica holds the same state (the Learner checked at the end of the fit), so rank 0's
        folder is everyone's. Under data parallelism its outcome is broadcast, so that the other
        ranks return only once the folder exists, and a failed write fails every rank.

        An in-place write commits only onto :attr:`state_version`, the version this updater read
        or last wrote (else :class:`~retentive.errors.StateConflictError`; the new state and its
        resume checkpoints, built on a superseded version, are discarded). SIGINT and SIGTERM are
        held back from the commit until the bookkeeping after it is done, then delivered: SIGINT as
        :class:`~retentive.state.interrupts.UpdateInterrupted`, whose ``committed`` says whether
        the new state is in place.
        """
        folder = self.output_state_folder
        assert folder is not None
        failure: Exception | None = None
        guard, committed = CommitGuard(), False
        if lock is not None:
            try:
                try:
                    if self.in_place:  # written beside, swapped in, the old one kept for rollback
                        swap_in(folder, self._state(), lock, expected=self.state_version, guard=guard)
                    else:
                        save_state(folder, self._state(), lock=lock, guard=guard)
                    committed = True
                    if self.state_locations.output_url is None:  # the version this updater now holds
                        self.state_version = manifest_digest(folder)
                    discard_checkpoints(folder)
                except StateConflictError:
                    discard_checkpoints(folder)
                    raise
                finally:
                    guard.stop()
                if guard.held and self.state_locations.output_url is not None:
                    committed = False  # interrupted before the upload: the URL was not written
                elif self.state_locations.output_url is not None:  # upload, commit, remove the stand-in
                    self._publish(manifest_digest(folder))
            except Exception as error:  # reported to the other ranks below, then re-raised here
                failure = error
        if self.world_size > 1:
            outcome = None if failure is None else f"{type(failure).__name__}: {failure}"
            message, version = broadcast_object((outcome, self.state_version))  # rank 0's new version
            if failure is None and message is not None:
                raise StateError(f"rank 0 could not write the state folder {str(folder)!r}: {message}")
            if message is None:  # every replica now holds the version rank 0 committed
                if self.state_locations.output_url is None:
                    check_visible(folder, version)  # which every rank must see (several nodes: a shared path)
                self.state_version = version
        where = self.state_locations.output_url or str(folder)
        guard.deliver(
            committed,
            f"interrupted after the new state was committed to {where!r}; the update is complete"
            if committed
            else f"interrupted before the new state was committed; {where!r} is unchanged",
        )
        if failure is not None:
            raise failure

    def _publish(self, version: str | None) -> None:
        """Publish the saved stand-in to the output URL; on success, or on a Ctrl-C that arrived
        during the pointer's commit after it completed, :attr:`state_version` becomes ``version``
        (what :meth:`_committed_in_call` reads)."""
        try:
            self.state_locations.publish()
        except UpdateInterrupted as interrupt:
            if interrupt.committed:
                self.state_version = version
            raise
        self.state_version = version

    def _log_memory(self) -> None:
        if isinstance(self.logger, TensorBoardLogger) and len(self.memory):
            targets = self.memory.decoded("targets").cpu()
            self.logger.experiment.add_histogram("memory/classes", targets, self.learner.total_steps)
            self.logger.experiment.flush()

    def _resume_session(
        self, train_dataset: Dataset, task: int | str, seed: int, lock: OutputLock | None
    ) -> ResumeSession | None:
        """With ``resume=True``: the session that finds and writes this update's checkpoints."""
        if not self.resume:
            return None
        assert self.output_state_folder is not None
        input_manifest = None if self.input_state_folder is None else self.input_state_folder / MANIFEST
        fingerprint = update_fingerprint(
            type(self).__name__, self.hyperparameters, input_manifest, task, seed, train_dataset
        )
        max_epochs = self.trainer_kwargs["max_epochs"]
        return ResumeSession(self.output_state_folder, fingerprint, lock, self._state, self._apply_state, max_epochs)
