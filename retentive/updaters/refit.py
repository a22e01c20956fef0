"""Refit: re-train the current model on what its memory holds now, as a new version of the state
(a mixin of :class:`~retentive.updaters.base.ModelUpdater`).

Deleting a sample from the memory removes its bytes, not what the weights learned from it. A
refit is the cheap mitigation: ``epochs`` passes of plain training (the task loss, no loss
components, no replay draw, nothing inserted) over the remaining memory, so that the model's
last steps are taken on data the deletion left. It runs through the one fit path
(:meth:`~retentive.updaters.fitting.FittingMixin.fit`: the Trainer, loaders, logging,
TensorBoard), seeded by its own random streams, and commits like an update: atomically, to a new
output folder, in place, or as a new version of a model home, with ``lineage.refit`` recording
what was refit, for how many epochs, on which memory and with which seed. What it does not
guarantee: see docs/how-to/refit.md (the sample's influence is reduced, not provably removed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import pytorch_lightning as pl
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import nn

from retentive.learner import Learner
from retentive.quiet import quiet_lightning
from retentive.state.interrupts import keyboard_interrupts
from retentive.state.locking import OutputLock
from retentive.streams import Purpose, stream_seed
from retentive.updaters.chunks import memory_dataset
from retentive.updaters.hooks import Fit
from retentive.updaters.interruption import interrupts_at_step_boundaries

if TYPE_CHECKING:
    from retentive.updaters.host import UpdaterHost as _Host
else:
    _Host = object


def check_epochs(epochs: object) -> int:
    """``epochs`` as a positive int, or a ValueError naming the value."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"a refit trains for epochs >= 1 (an int), got {epochs!r}")
    return epochs


#: the Learner's settings a refit keeps: its argument -> the Learner attribute holding it
_KEPT = {
    "lr_scheduler": "lr_scheduler_factory",
    "mask_unused_classes": "mask_unused_classes",
    "log_every_n_steps": "log_every_n_steps",
    "learning_rate_scheduler_interval": "scheduler_interval",
    "gradient_clip_val": "gradient_clip_val",
    "gradient_clip_algorithm": "gradient_clip_algorithm",
}


def refit_learner(learner: Learner) -> Learner:
    """A plain Learner over the same model, loss, optimizer and schedule: no components, no memory
    of its own (nothing drawn, nothing inserted, no update-end selection), and the memory's samples
    seen as replayed samples are (the buffer transforms)."""
    kept = {name: getattr(learner, attribute) for name, attribute in _KEPT.items()}
    buffer, test = learner.transforms["buffer"], learner.transforms["test"]
    plain = Learner(
        learner.model,
        learner.loss_fn,
        learner.optimizer_factory,
        update_memory_every_step=False,
        train_transform=buffer[0],
        train_target_transform=buffer[1],
        test_transform=test[0],
        test_target_transform=test[1],
        **kept,
    )
    plain.epoch_metrics = learner.epoch_metrics  # the metrics the updater logs (train_<name>)
    plain.total_steps = learner.total_steps  # TensorBoard's steps go on from the update's
    return plain


class RefitMixin(_Host):
    """:meth:`refit`: ``epochs`` of training on the memory, written as a new version."""

    #: why this method cannot be refit (a method whose structure a plain fit would break), or None
    refit_refusal: ClassVar[str | None] = None

    def refit(self, epochs: int) -> nn.Module:
        """Re-train the model on the samples its memory holds for ``epochs`` epochs; write the result.

        Build the updater as for the next update (the same model, loss and optimizer;
        ``input_state_folder`` the state to refit, ``output_state_folder`` a new folder, the same
        folder for an in-place refit, or the same model home for a new version of it). Each step
        takes the updater's whole step batch (new plus memory share) from the memory, with the
        buffer transforms; components, replay and insertion are off, the memory is unchanged. The
        counters (``updates_done``, ``tasks_seen``) stay: a refit is a new version of the last
        update, not an update. Two refits of the same state with the same seed are equal bit for
        bit. Raises ``ValueError`` for ``epochs`` < 1, a memory without samples (empty, or a
        generator) or a method that declares a ``refit_refusal`` (PackNet); the locking, conflict
        and rollback rules are :meth:`update`'s.
        """
        epochs = check_epochs(epochs)
        if self.refit_refusal is not None:
            raise ValueError(f"cannot refit a {type(self).__name__}: {self.refit_refusal}")
        if not self.memory.takes_samples or len(self.memory) == 0:
            what = "holds no samples" if self.memory.takes_samples else "stores no samples (it generates them)"
            raise ValueError(f"cannot refit: the memory {what}, so there is nothing to re-train on")
        writer = self.output_state_folder is not None and rank_zero_only.rank == 0  # type: ignore[attr-defined]
        lock = OutputLock(self.output_state_folder).acquire() if writer else None  # type: ignore[arg-type]
        self._version_at_call = self.state_version
        try:
            if lock is not None and self.in_place:
                self._check_unchanged("Nothing was trained or written (build the updater again to refit it).")
            with (
                quiet_lightning(),
                keyboard_interrupts(*self._interrupt_messages(), self._committed_in_call),
                interrupts_at_step_boundaries(self.callbacks),
            ):
                self._refit(epochs, lock)
        finally:
            if lock is not None:
                lock.release()
        return self.model

    def _refit(self, epochs: int, lock: OutputLock | None) -> None:
        update = max(self.updates_done - 1, 0)  # the update this version is a refit of
        task: int | str = self.task_order[-1] if self.task_order else update
        data = memory_dataset(self.memory)
        self._begin_lineage(data, update, task)
        batch_size = self.new_batch_size + self.memory_batch_size
        self._lineage_inputs["refit"] = {"epochs": epochs, "samples": len(data), "batch_size": batch_size}
        backup = self._snapshot()
        try:
            pl.seed_everything(stream_seed(self.seed, update, Purpose.REFIT, bits=32), workers=True, verbose=False)
            with self._plain_learner(update, task):
                self.chunk_size = len(data)  # the memory is the data (epochs counted on it)
                self.fit(
                    Fit(data, epochs=epochs, batch_size=batch_size), stream_seed(self.seed, update, Purpose.REFIT_ORDER)
                )
            if self.output_state_folder is not None:
                self._save(lock)
        except BaseException:
            if not self._committed_in_call():
                self._put_back(backup)
            raise

    @contextmanager
    def _plain_learner(self, update: int, task: int | str) -> Iterator[Learner]:
        """The updater's Learner replaced by :func:`refit_learner` for the fit; its step count kept."""
        original, plain = self.learner, refit_learner(self.learner)
        plain.begin_update(self.seed, update, task, None)
        if plain.mask_unused_classes:  # the classes the memory holds
            plain.set_chunk_classes(self.memory.decoded("targets").cpu())
        self.learner = plain
        try:
            yield plain
            original.total_steps = plain.total_steps
        finally:
            self.learner = original


def refit_record(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The ``lineage.refit`` entry of a manifest (``None`` if the state is not a refit)."""
    lineage = manifest.get("lineage")
    record = lineage.get("refit") if isinstance(lineage, dict) else None
    return record if isinstance(record, dict) else None
