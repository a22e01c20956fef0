"""Fitting one chunk with Lightning: the loaders, the Trainer and its callbacks (a mixin of
:class:`~retentive.updaters.base.ModelUpdater`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytorch_lightning as pl
from pytorch_lightning.strategies.launchers import _MultiProcessingLauncher
from torch.utils.data import DataLoader, Dataset

from retentive.data.loaders import training_loader
from retentive.learner.runs import log_hyperparameters, run_callbacks
from retentive.state.resume import ResumeSession
from retentive.updaters.monitoring import BestEpoch

if TYPE_CHECKING:
    from retentive.updaters.host import UpdaterHost as _Host
else:
    _Host = object


class FittingMixin(_Host):
    """``_fit`` and the Trainer and loaders it builds."""

    def _loader(self, dataset: Dataset, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> DataLoader:
        return training_loader(dataset, self.new_batch_size, shuffle, seed, rank, world_size, self.num_workers)

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

    def _fit(
        self,
        train_dataset: Dataset,
        val_dataset: Dataset | None,
        seed: int,
        session: ResumeSession | None,
        max_epochs: int | None = None,
    ) -> None:
        """One fit: ``max_epochs`` epochs [the updater's], with resume, best-epoch selection and logging.

        A method's extra fits (PackNet's retraining, Repeated Distillation's second fit) come here too.
        """
        total = self.trainer_kwargs["max_epochs"] if max_epochs is None else max_epochs
        epochs = total - (0 if session is None else session.epochs_before)
        callbacks: list[pl.Callback] = [] if session is None else [session.callback()]
        if self.metric is not None and val_dataset is not None:
            # Renate's checkpoint rule: with a monitored metric and a validation set, the state
            # written is the best epoch's (early stopping or not)
            callbacks.append(BestEpoch(self.metric, self.mode, self._snapshot, self._put_back))
            if self.early_stopping_enabled:
                from pytorch_lightning.callbacks import EarlyStopping

                callbacks.append(EarlyStopping(monitor=self.metric, mode=self.mode))
        trainer = self._trainer(max_epochs=epochs, callbacks=callbacks)
        self._check_launcher(trainer)
        steps = self._steps_per_epoch(trainer.world_size)
        if steps is not None:
            trainer.limit_train_batches = steps
        self.effective_precision = str(trainer.precision)  # Lightning may fall back (16-mixed on CPU)
        if self.logger is not None:
            log_hyperparameters(self.logger, self.hyperparameters, self.learner.total_steps)
        # the data-parallel ranks are known once the Trainer is built; the loaders shard by them
        self.world_size, self.global_rank = trainer.world_size, trainer.global_rank
        ranks = {"rank": trainer.global_rank, "world_size": trainer.world_size}
        train_loader = self._loader(train_dataset, shuffle=True, seed=seed, **ranks)
        if session is not None:
            session.attach_loader(train_loader)
        trainer.fit(
            self.learner,
            train_dataloaders=train_loader,
            val_dataloaders=None
            if val_dataset is None
            else self._loader(val_dataset, shuffle=False, seed=seed, **ranks),
        )
        if trainer.interrupted:
            raise RuntimeError("the update was interrupted before it finished; nothing was written")
        if session is not None:
            session.finish()

    def _check_launcher(self, trainer: pl.Trainer) -> None:
        if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
            raise ValueError(
                f"strategy={self.trainer_kwargs['strategy']!r} trains in processes it starts and then discards, so "
                "the memory and component state they build would be lost; use strategy='ddp' (one process "
                "per device, started by Lightning or by torchrun/SLURM), which runs this script on every rank"
            )
