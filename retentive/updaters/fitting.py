"""The one fit path of an update: every :class:`~retentive.updaters.hooks.Fit` a method yields runs
through :meth:`FittingMixin.run_fits`, with the same loaders, Trainer, resume checkpoints, best
epoch and logging (a mixin of :class:`~retentive.updaters.base.ModelUpdater`).

With ``resume=True`` the checkpoints count the epochs of all the update's fits in a row: a fit
whose epochs an interrupted run completed is not trained again (its state comes from the
checkpoint), the fit the run was in continues from its last completed epoch, and a checkpoint is
also written at the end of each fit, so that a crash between two fits loses neither.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies.launchers import _MultiProcessingLauncher
from torch.utils.data import DataLoader, Dataset

from retentive.data.loaders import training_loader
from retentive.data.transfer import pins_batches
from retentive.evaluation import chunk_classes
from retentive.learner.runs import log_hyperparameters, run_callbacks
from retentive.state.resume import (
    EpochCheckpointer,
    ResumeSession,
    capture_training,
    restore_training,
    write_checkpoint,
)
from retentive.updaters.hooks import Fit
from retentive.updaters.identified import IdentifiedView
from retentive.updaters.monitoring import BestEpoch

if TYPE_CHECKING:
    from retentive.updaters.host import UpdaterHost as _Host
else:
    _Host = object


def exposes_targets(dataset: Dataset) -> bool:
    """Whether the data's labels were all checked before training (a ``targets`` tensor)."""
    targets = getattr(dataset, "targets", None)
    return torch.is_tensor(targets) and targets.dim() == 1 and targets.shape[0] == len(dataset)  # type: ignore[arg-type]


class FitWindow:
    """The epochs ``[offset, offset + epochs)`` of an update's resume session that one fit covers."""

    def __init__(self, session: ResumeSession, offset: int, epochs: int) -> None:
        self.session, self.offset, self.epochs = session, offset, epochs
        before = 0 if session.checkpoint is None else session.checkpoint.epochs_done - offset
        self.done = min(max(before, 0), epochs)  # epochs of this fit the interrupted run completed
        self._loader: DataLoader | None = None

    @property
    def skipped(self) -> bool:
        """The interrupted run completed this fit: its state is restored instead of trained."""
        return self.done == self.epochs

    def restore_state(self) -> None:
        """The checkpoint's state, put into the updater (for a fit it completed)."""
        checkpoint = self.session.checkpoint
        assert checkpoint is not None
        self.session.apply(checkpoint.state, checkpoint.folder)

    def callback(self) -> EpochCheckpointer:
        resuming = 0 < self.done < self.epochs  # the run was interrupted inside this fit
        save = None if self.session.lock is None else self._write
        return EpochCheckpointer(save, self.offset + self.done, self._restore if resuming else None)

    def _restore(self, trainer: pl.Trainer) -> None:
        checkpoint = self.session.checkpoint
        assert checkpoint is not None
        self.restore_state()
        restore_training(trainer, checkpoint.training, checkpoint.folder)

    def _write(self, trainer: pl.Trainer, epochs_done: int) -> None:
        session = self.session
        assert session.lock is not None and self._loader is not None
        training = capture_training(trainer, self._loader)
        write_checkpoint(
            session.output, session.lock, session.capture(), training, session.fingerprint, epochs_done, False
        )

    def attach_loader(self, loader: DataLoader) -> None:
        """The fit's loader: its generator is saved with checkpoints, and restored from one made in this fit."""
        self._loader = loader
        if 0 < self.done < self.epochs:
            self.session.attach_loader(loader)

    def finish(self, trainer: pl.Trainer) -> None:
        """At the end of the fit: a checkpoint of it (a crash before the next fit keeps it)."""
        if self.session.lock is not None:
            self._write(trainer, self.offset + self.epochs)


class FittingMixin(_Host):
    """``run_fits``, the one fit path (``fit``), and the Trainer and loaders it builds."""

    def _loader(
        self,
        dataset: Dataset,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        size: int | None = None,
        pin: bool = False,
    ) -> DataLoader:
        """The loader of one fit's data, ``size`` samples a step (``None``: the updater's new-sample batch)."""
        size = self.new_batch_size if size is None else size
        return training_loader(dataset, size, shuffle, seed, rank, world_size, self.num_workers, pin_memory=pin)

    def _trainer(self, max_epochs: int | None = None, callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
        kwargs = dict(self.trainer_kwargs)
        if max_epochs is not None:
            kwargs["max_epochs"] = max_epochs
        return pl.Trainer(
            logger=self.logger if self.logger is not None else False,
            callbacks=[*self.callbacks, *callbacks, *run_callbacks(kwargs["enable_progress_bar"], self.callbacks)],
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=self.learner.log_every_n_steps,
            use_distributed_sampler=False,  # under DDP the loaders shard the data themselves
            **kwargs,
        )

    def run_fits(
        self,
        train_dataset: Dataset,
        val_dataset: Dataset | None,
        task_id: int,
        seed: int,
        session: ResumeSession | None,
    ) -> None:
        """Every fit the method's :meth:`fits` yields, in order; the ``k``-th shuffles with ``seed ^ k``.

        The classes of the first fit's data are the update's (``mask_unused_classes``). On any
        failure the method's generator is closed at once, so its clean-up (after a ``yield``) runs
        before the updater is put back.
        """
        offset, fits = 0, self.fits(train_dataset, val_dataset, task_id)
        try:
            for index, fit in enumerate(fits):
                if index == 0 and self.learner.mask_unused_classes:
                    self.learner.set_chunk_classes(chunk_classes(fit.data))
                epochs = self.trainer_kwargs["max_epochs"] if fit.epochs is None else fit.epochs
                window = None if session is None else FitWindow(session, offset, epochs)
                if window is not None and window.skipped:
                    window.restore_state()
                else:
                    self.fit(fit, seed ^ index, window)
                offset += epochs
        finally:
            if isinstance(fits, Generator):
                fits.close()
        if session is not None and session.lock is not None:  # the complete checkpoint: only the save is left
            write_checkpoint(session.output, session.lock, session.capture(), {}, session.fingerprint, offset, True)

    def fit(self, fit: Fit, seed: int, window: FitWindow | None = None) -> None:
        """One fit: the Trainer over ``fit.data``, with resume, best-epoch selection and logging."""
        epochs = self.trainer_kwargs["max_epochs"] if fit.epochs is None else fit.epochs
        callbacks: list[pl.Callback] = []
        if window is not None:
            epochs -= window.done
            callbacks.append(window.callback())
        if self.metric is not None and fit.val_data is not None:
            # Renate's checkpoint rule: with a monitored metric and a validation set, the state
            # written is the best epoch's (early stopping or not)
            callbacks.append(BestEpoch(self.metric, self.mode, self._snapshot, self._put_back))
            if self.early_stopping_enabled:
                from pytorch_lightning.callbacks import EarlyStopping

                callbacks.append(EarlyStopping(monitor=self.metric, mode=self.mode))
        self.learner.check_labels_per_step = not exposes_targets(fit.data)
        trainer = self._trainer(max_epochs=epochs, callbacks=callbacks)
        self._check_launcher(trainer)
        steps = self.steps_per_epoch(trainer.world_size)
        if steps is not None:
            trainer.limit_train_batches = steps
        self.effective_precision = str(trainer.precision)  # Lightning may fall back (16-mixed on CPU)
        if self.logger is not None:
            log_hyperparameters(self.logger, self.hyperparameters, self.learner.total_steps)
        # the data-parallel ranks are known once the Trainer is built; the loaders shard by them
        self.world_size, self.global_rank = trainer.world_size, trainer.global_rank
        ranks = {"rank": trainer.global_rank, "world_size": trainer.world_size}
        device = trainer.strategy.root_device
        pin = pins_batches(fit.data, device)
        train_loader = self._loader(self._with_identity(fit.data), True, seed, **ranks, size=fit.batch_size, pin=pin)
        val_loader = None
        if fit.val_data is not None:
            val_loader = self._loader(fit.val_data, False, seed, **ranks, pin=pins_batches(fit.val_data, device))
        if window is not None:
            window.attach_loader(train_loader)
        trainer.fit(self.learner, train_dataloaders=train_loader, val_dataloaders=val_loader)
        if trainer.interrupted:
            raise RuntimeError("the update was interrupted before it finished; nothing was written")
        if window is not None:
            window.finish(trainer)

    def _with_identity(self, data: Dataset) -> Dataset:
        """The update's chunk read with its samples' rows and ids (:mod:`retentive.updaters.identified`);
        any other fit's data (the memory itself, logits) as it is."""
        identified = getattr(self, "_identified", None)
        if identified is None or data is not identified[0]:
            return data
        return IdentifiedView(data, identified[1], identified[2])

    def _check_launcher(self, trainer: pl.Trainer) -> None:
        if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
            raise ValueError(
                f"strategy={self.trainer_kwargs['strategy']!r} trains in processes it starts and then discards, so "
                "the memory and component state they build would be lost; use strategy='ddp' (one process "
                "per device, started by Lightning or by torchrun/SLURM), which runs this script on every rank"
            )
