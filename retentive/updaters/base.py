"""ModelUpdater: the life cycle of one update — load state, fit with Lightning, save state.

Subclasses choose the loss components (and the memory); everything else — batching, seeding,
the Trainer, validation of the input, and the state folder — lives here once.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from pytorch_lightning.strategies.launchers import _MultiProcessingLauncher
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from retentive.components.base import Batch, Component
from retentive.data.loaders import training_loader
from retentive.distributed import broadcast_object
from retentive.errors import DataError, StateError
from retentive.evaluation import chunk_classes
from retentive.learner import Learner, OptimizerFactory, SchedulerFactory
from retentive.learner.passes import insert_chunk, refresh_metadata
from retentive.data import nested
from retentive.learner.transforms import Transform, apply_transform
from retentive.state.locking import OutputLock
from retentive.memory.buffer import ReplayBuffer
from retentive.quiet import quiet_lightning
from retentive.memory.policies import InsertionPolicy
from retentive.state.resume import ResumeSession, discard_checkpoints, update_fingerprint
from retentive.state import MANIFEST, State, check_output_folder, load_state, save_state
from retentive.streams import STREAMS_SCHEME, Purpose, memory_seeds, stream_seed
from retentive.updaters.arguments import (
    NOT_HYPERPARAMETERS,
    captured_arguments,
    plain,
    split_batch,
)
from retentive.updaters.chunks import chunk_batches
from retentive.updaters.validation import check_chunk, check_dataset, probe_model

MEMORY_INSERTION = ("step", "update_end")


def _shape(x: Any) -> Any:
    flat = nested.flatten(x) if not torch.is_tensor(x) else {"": x}
    return tuple(flat[""].shape) if list(flat) == [""] else {k: tuple(v.shape) for k, v in flat.items()}


def _exposes_targets(dataset: Dataset) -> bool:
    """Whether the chunk's labels were all checked before training (a ``targets`` tensor)."""
    targets = getattr(dataset, "targets", None)
    return torch.is_tensor(targets) and targets.dim() == 1 and targets.shape[0] == len(dataset)  # type: ignore[arg-type]


class ModelUpdater:
    """Updates a model on one data chunk per :meth:`update` call without forgetting the earlier ones.

    Args:
        model: any ``nn.Module`` returning logits. With ``input_state_folder`` its weights are
            replaced by the saved ones, so build it the same way as for the first chunk.
        loss_fn: the task loss, e.g. ``nn.CrossEntropyLoss()`` (mean-reduced).
        optimizer: a callable taking the parameters, e.g. ``partial(torch.optim.SGD, lr=0.03)``;
            a fresh optimizer is built for each update, as in Renate.
        components: the weighted loss terms (subclasses fill this in).
        memory_size: replay memory capacity in samples (0: no memory).
        batch_size, batch_memory_frac, memory_batch_size: the step's batch; see :func:`split_batch`.
        loss_weight: the weight of the loss on new data.
        loss_normalization: divide the total loss by the sum of the weights (Renate's default).
        ema_memory_update_gamma: EMA refresh of stored metadata for replayed samples (1: off).
        mask_unused_classes: mask logits of classes absent from the chunk in the new-data loss.
        learning_rate_scheduler: optional callable building a scheduler from the optimizer.
        memory_policy: how the memory chooses what to keep (reservoir by default).
        memory_input_dtype: store the memory's inputs compactly: ``"uint8"`` (exact for images
            with values ``k/255``, 4x smaller than float32), ``"float16"`` or ``"bfloat16"``
            (lossy); ``None`` stores them as given. The model always sees them as given.
        input_state_folder: the previous update's output; ``None`` for the first chunk.
        output_state_folder: where this update's state goes (must not exist); ``None``: not saved.
        max_epochs, accelerator, devices, strategy, precision, num_nodes: Lightning Trainer settings.
            With ``strategy="ddp"`` and several devices or nodes, ``batch_size`` is per device and
            every rank keeps an identical replica of the memory (docs/ddp.md).
        seed: makes each update reproducible; update ``k`` uses ``seed + k``.
        logger: a Lightning logger; default a ``TensorBoardLogger("tb_logs")`` made here; ``False``
            disables logging.
        enable_progress_bar: Lightning's progress bar.
        log_every_n_steps: how often training losses are logged.
        num_workers: DataLoader workers.
        callbacks: extra Lightning callbacks.
        resume: keep a checkpoint after every epoch beside the output folder and, if an earlier run
            of this same update was interrupted, continue from its last completed epoch (see
            :mod:`retentive.state.resume`). Needs ``output_state_folder``.
        train_transform, train_target_transform: applied to each new batch on the fly (Renate's
            names); the memory stores the samples untransformed.
        test_transform, test_target_transform: applied to validation batches and to the passes
            that update-end hooks make over the chunk and the memory.
        buffer_transform, buffer_target_transform: applied to each replayed batch.
        memory_insertion: ``"step"`` [Renate's]: the new samples are offered to the memory after
            every step; ``"update_end"``: the whole chunk is offered once the update has trained
            (as Offline-ER and Avalanche's replay do), so replay batches hold earlier chunks only.
            Metadata (DER's logits) are then computed by the trained model in eval mode.
        refresh_memory_metadata: at the end of each update, recompute the stored metadata (DER's
            logits, POD's features) of the samples this update inserted, with the trained model in
            eval mode (as Avalanche's DER stores end-of-task logits) [False: keep the values
            computed at insertion, Renate's and the DER paper's].
    """

    _captures_arguments = True  # captured_arguments fills in defaults from every such class

    def __new__(cls, *args: Any, **kwargs: Any) -> ModelUpdater:
        self = super().__new__(cls)
        try:
            self._arguments = captured_arguments(cls, args, kwargs)
        except TypeError:
            self._arguments = {}  # __init__ raises the precise TypeError itself
        return self

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        optimizer: OptimizerFactory,
        components: Sequence[Component] = (),
        memory_size: int = 0,
        batch_size: int = 32,
        batch_memory_frac: float | None = None,
        memory_batch_size: int | None = None,
        loss_weight: float = 1.0,
        loss_normalization: bool = True,
        ema_memory_update_gamma: float = 1.0,
        mask_unused_classes: bool = False,
        learning_rate_scheduler: SchedulerFactory | None = None,
        memory_policy: InsertionPolicy | None = None,
        memory_input_dtype: str | None = None,
        input_state_folder: str | os.PathLike[str] | None = None,
        output_state_folder: str | os.PathLike[str] | None = None,
        max_epochs: int = 1,
        accelerator: str = "auto",
        devices: int | str | list[int] = 1,
        strategy: str | Any = "auto",
        precision: str | int = "32",
        num_nodes: int = 1,
        seed: int = 0,
        logger: Logger | bool | None = None,
        enable_progress_bar: bool = True,
        log_every_n_steps: int = 50,
        num_workers: int = 0,
        callbacks: Sequence[pl.Callback] = (),
        resume: bool = False,
        train_transform: Transform | None = None,
        train_target_transform: Transform | None = None,
        test_transform: Transform | None = None,
        test_target_transform: Transform | None = None,
        buffer_transform: Transform | None = None,
        buffer_target_transform: Transform | None = None,
        memory_insertion: str = "step",
        refresh_memory_metadata: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(optimizer):
            raise TypeError(f"optimizer must be a callable taking the parameters, got {type(optimizer).__name__}")
        if not isinstance(memory_size, int) or isinstance(memory_size, bool) or memory_size < 0:
            raise ValueError(f"memory_size must be an int >= 0, got {memory_size!r}")
        if not isinstance(max_epochs, int) or max_epochs < 1:
            raise ValueError(f"max_epochs must be an int >= 1, got {max_epochs!r}")
        self.new_batch_size, self.memory_batch_size = split_batch(
            batch_size, memory_size, batch_memory_frac, memory_batch_size
        )
        self.model = model
        self.input_state_folder = None if input_state_folder is None else Path(input_state_folder)
        self.output_state_folder = None if output_state_folder is None else Path(output_state_folder)
        if self.output_state_folder is not None:
            check_output_folder(self.output_state_folder, self.input_state_folder)
        if resume and self.output_state_folder is None:
            raise ValueError("resume=True needs an output_state_folder: the checkpoints are kept beside it")
        self.resume = bool(resume)
        if memory_insertion not in MEMORY_INSERTION:
            raise ValueError(f"memory_insertion must be one of {MEMORY_INSERTION}, got {memory_insertion!r}")
        self.memory_insertion = memory_insertion
        self.refresh_memory_metadata = bool(refresh_memory_metadata)
        self.memory_input_dtype = memory_input_dtype
        self.memory = self._build_memory(memory_size, memory_policy, seed)
        self.learner = self._build_learner(
            model=model,
            loss_fn=loss_fn,
            optimizer=optimizer,
            components=components,
            memory=self.memory,
            memory_batch_size=self.memory_batch_size,
            loss_weight=loss_weight,
            loss_normalization=loss_normalization,
            ema_memory_update_gamma=ema_memory_update_gamma,
            mask_unused_classes=mask_unused_classes,
            lr_scheduler=learning_rate_scheduler,
            log_every_n_steps=log_every_n_steps,
            update_memory_every_step=memory_insertion == "step",
            train_transform=train_transform,
            train_target_transform=train_target_transform,
            buffer_transform=buffer_transform,
            buffer_target_transform=buffer_target_transform,
            test_transform=test_transform,
            test_target_transform=test_target_transform,
        )
        self.trainer_kwargs: dict[str, Any] = dict(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            precision=precision,
            num_nodes=num_nodes,
            enable_progress_bar=enable_progress_bar,
        )
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.callbacks = list(callbacks)
        if logger is None or logger is True:
            logger = TensorBoardLogger(save_dir="tb_logs", name=type(self).__name__)
        self.logger: Logger | None = logger or None
        arguments = getattr(self, "_arguments", {})
        self.hyperparameters: dict[str, Any] = {
            name: plain(value) for name, value in arguments.items() if name not in NOT_HYPERPARAMETERS
        }
        self.hyperparameters["precision"] = str(precision)
        self.effective_precision: str | None = None
        self.updates_done = 0
        self.tasks_seen: dict[str, int] = {}
        self.task_order: list[int | str] = []  # the task of each update, in order (growing models replay it)
        self.world_size = 1  # the data-parallel ranks of the last update (recorded in the manifest)
        self.global_rank = 0  # this process's rank in the last update
        if self.input_state_folder is not None:
            self._restore(load_state(self.input_state_folder))

    # ---------------------------------------------------------------- state
    def _restore(self, state: State) -> None:
        """Apply a loaded state; if it does not fit, raise StateError and leave everything as it was."""
        backup = self._snapshot()
        try:
            self._apply_state(state, self.input_state_folder)
        except BaseException:
            self._put_back(backup)
            raise

    def _apply_state(self, state: State, folder: Path | None) -> None:
        task_order = list(state.learner.get("updater", {}).get("task_order", []))
        self._adapt_model(task_order)  # a growing model rebuilds its structure before weights load
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

    def _adapt_model(self, tasks: Sequence[int | str]) -> None:
        """Let a model that grows per task (``model.adapt(task_id)``) grow for each of ``tasks``."""
        adapt = getattr(self.model, "adapt", None)
        if callable(adapt):
            for task in tasks:
                adapt(task)

    def _snapshot(self) -> tuple[Any, ...]:
        """Everything an update changes, copied, so that a failure can put it back with :meth:`_put_back`."""
        return (
            copy.deepcopy(self.model.state_dict()),
            self.memory.state_dict(),
            copy.deepcopy(self.learner.extra_state()),
            (self.updates_done, dict(self.tasks_seen), list(self.task_order)),
        )

    def _put_back(self, backup: tuple[Any, ...]) -> None:
        self.model.load_state_dict(backup[0])
        self.memory.load_state_dict(backup[1])
        self.learner.load_extra_state(backup[2])
        self.updates_done, self.tasks_seen, self.task_order = backup[3]

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
            },
        )

    # ---------------------------------------------------------------- input checks
    def _check_transforms(self, dataset: Dataset, task: int | str) -> None:
        """Refuse, before training, a transform whose output the model cannot run on."""
        sample = dataset[0][0]  # type: ignore[index]
        one = nested.tree_map(lambda leaf: leaf.unsqueeze(0), sample)
        route = task if isinstance(task, int) else 0
        for role, (transform, _) in self.learner.transforms.items():
            name = f"{role}_transform"
            if transform is None:
                continue
            try:
                out = nested.tree_map(lambda leaf: leaf[0], apply_transform(transform, one, name))
                probe_model(self.model, out, route, name)
            except DataError as error:
                raise DataError(
                    f"{name} turns a sample of shape {_shape(sample)} into shape {_shape(out)}, which the "
                    f"model cannot run on: {error}"
                ) from error
            except Exception as error:
                raise DataError(f"{name} fails on a sample of shape {_shape(sample)}: {type(error).__name__}: {error}") from error

    # ---------------------------------------------------------------- hooks for subclasses
    def _build_memory(self, memory_size: int, policy: InsertionPolicy | None, seed: int) -> ReplayBuffer:
        """The memory this updater keeps (Joint keeps an unbounded one)."""
        return ReplayBuffer(memory_size, policy=policy, seed=seed, input_dtype=self.memory_input_dtype)

    def _training_data(self, train_dataset: Dataset, task_id: int) -> Dataset:
        """What the fit iterates over; the chunk itself unless a subclass trains on its memory."""
        return train_dataset

    def _build_learner(self, **kwargs: Any) -> Learner:
        """The Learner of this updater; a method that changes the optimisation loop itself (MER,
        online meta-learning) returns its Learner subclass here."""
        return Learner(**kwargs)

    def _after_fit(self, train_dataset: Dataset, task_id: int) -> None:
        """After a successful fit, before the state is saved: update-end memory work.

        With ``memory_insertion="update_end"`` the chunk is offered to the memory now, with
        metadata from the trained model; with ``refresh_memory_metadata`` the metadata of the
        samples this update inserted are recomputed by the trained model.
        """
        if self.memory_insertion == "update_end" and self.memory.capacity:
            insert_chunk(self.learner, self._batches(train_dataset, task_id))
        elif self.refresh_memory_metadata and self.learner.inserted_slots:
            refresh_metadata(self.learner, torch.cat([s.cpu() for s in self.learner.inserted_slots]))

    def _batches(self, dataset: Dataset, task_id: int | str, batch_size: int = 1024) -> Iterator[Batch]:
        """The whole chunk in order, as batches (what update-level hooks iterate)."""
        default = task_id if isinstance(task_id, int) else 0
        for rows in chunk_batches(dataset, default, batch_size):
            yield Batch(rows["inputs"], rows["targets"], rows["task_ids"])

    # ---------------------------------------------------------------- the update
    def _loader(self, dataset: Dataset, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> DataLoader:
        return training_loader(dataset, self.new_batch_size, shuffle, seed, rank, world_size, self.num_workers)

    def _trainer(self, max_epochs: int | None = None, callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
        kwargs = dict(self.trainer_kwargs)
        if max_epochs is not None:
            kwargs["max_epochs"] = max_epochs
        return pl.Trainer(
            logger=self.logger if self.logger is not None else False,
            callbacks=list(self.callbacks) + list(callbacks),
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=self.learner.log_every_n_steps,
            use_distributed_sampler=False,  # under DDP the loaders shard the data themselves
            **kwargs,
        )

    def update(self, train_dataset: Dataset, val_dataset: Dataset | None = None, task_id: int | None = None) -> nn.Module:
        """Train on one chunk, save the new state, and return the updated model.

        The output folder is locked for the whole call: a second update writing the same folder
        fails at once with :class:`~retentive.errors.StateLockedError`. On any failure (bad data, a
        NaN loss, an interrupted fit, a failed write) the model and memory are put back as they were
        before the call and no output is written; with ``resume=True`` the epochs completed so far
        stay in the checkpoint for the next attempt.
        """
        # Only the global-zero process writes (lock, checkpoints, output); with DDP's subprocess
        # launcher the other ranks run this same call and must not contend for the lock.
        writer = self.output_state_folder is not None and rank_zero_only.rank == 0
        lock = OutputLock(self.output_state_folder).acquire() if writer else None  # type: ignore[arg-type]
        try:
            with quiet_lightning():  # Lightning's banner, tips and notices that do not apply
                return self._update(train_dataset, val_dataset, task_id, lock)
        finally:
            if lock is not None:
                lock.release()

    def _update(
        self, train_dataset: Dataset, val_dataset: Dataset | None, task_id: int | None, lock: OutputLock | None
    ) -> nn.Module:
        if self.output_state_folder is not None:
            check_output_folder(self.output_state_folder, self.input_state_folder)
        if task_id is not None and (not isinstance(task_id, int) or isinstance(task_id, bool) or task_id < 0):
            raise DataError(f"task_id must be an int >= 0, got {task_id!r}")
        task = self.updates_done if task_id is None else task_id
        # a growing model grows for the task first (idempotent per task): the checks probe it, and
        # the rollback snapshot below then covers its new structure
        self._adapt_model([task])
        check_dataset(train_dataset, "training", self.memory)
        check_chunk(self.model, train_dataset, "training", task_id, task)
        if val_dataset is not None:
            check_dataset(val_dataset, "validation", self.memory)
            check_chunk(self.model, val_dataset, "validation", None, task)
        self._check_transforms(train_dataset, task)
        update = self.updates_done
        seed = stream_seed(self.seed, update, Purpose.DATA_ORDER)  # the loader's shuffle
        session = None
        if self.resume:
            assert self.output_state_folder is not None
            fingerprint = update_fingerprint(
                type(self).__name__, self.hyperparameters,
                None if self.input_state_folder is None else self.input_state_folder / MANIFEST,
                task, seed, train_dataset,
            )
            session = ResumeSession(self.output_state_folder, fingerprint, lock, self._state, self._apply_state,
                                    self.trainer_kwargs["max_epochs"])
        backup = self._snapshot()
        pl.seed_everything(stream_seed(self.seed, update, Purpose.GLOBAL, bits=32), workers=True, verbose=False)
        self.memory.reseed(*memory_seeds(self.seed, update))
        self.learner.begin_update(self.seed, update, task, partial(self._batches, train_dataset, task))
        try:
            fit_dataset = self._training_data(train_dataset, task)
            self.learner.check_labels_per_step = not _exposes_targets(fit_dataset)
            if self.learner.mask_unused_classes:
                self.learner.set_chunk_classes(chunk_classes(fit_dataset))
            if session is not None and session.trained:
                self._apply_state(session.checkpoint.state, session.checkpoint.folder)  # type: ignore[union-attr]
            else:
                self._fit(fit_dataset, val_dataset, seed, session)
            self._after_fit(train_dataset, task)
            self.updates_done += 1
            self.task_order.append(task)
            self.tasks_seen[str(task)] = self.tasks_seen.get(str(task), 0) + len(train_dataset)  # type: ignore[arg-type]
            self._log_memory()
            if self.output_state_folder is not None:
                self._save(lock)
        except BaseException:
            self._put_back(backup)
            raise
        return self.model

    def _fit(
        self, train_dataset: Dataset, val_dataset: Dataset | None, seed: int, session: ResumeSession | None
    ) -> None:
        epochs = self.trainer_kwargs["max_epochs"] - (0 if session is None else session.epochs_before)
        trainer = self._trainer(max_epochs=epochs, callbacks=[] if session is None else [session.callback()])
        self._check_launcher(trainer)
        self.effective_precision = str(trainer.precision)  # Lightning may fall back (16-mixed on CPU)
        if self.logger is not None:
            self.logger.log_hyperparams(self.hyperparameters)
        # the data-parallel ranks are known once the Trainer is built; the loaders shard by them
        self.world_size, self.global_rank = trainer.world_size, trainer.global_rank
        ranks = {"rank": trainer.global_rank, "world_size": trainer.world_size}
        train_loader = self._loader(train_dataset, shuffle=True, seed=seed, **ranks)
        if session is not None:
            session.attach_loader(train_loader)
        trainer.fit(
            self.learner,
            train_dataloaders=train_loader,
            val_dataloaders=None if val_dataset is None else self._loader(val_dataset, shuffle=False, seed=seed, **ranks),
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

    def _save(self, lock: OutputLock | None) -> None:
        """Write the state folder: the rank holding the lock (rank 0) writes, the others wait for it.

        Every replica holds the same state (the Learner checked at the end of the fit), so rank 0's
        folder is everyone's. Under data parallelism its outcome is broadcast, so that the other
        ranks return only once the folder exists, and a failed write fails every rank.
        """
        folder = self.output_state_folder
        assert folder is not None
        failure: Exception | None = None
        if lock is not None:
            try:
                save_state(folder, self._state(), lock=lock)
                discard_checkpoints(folder)
            except Exception as error:  # reported to the other ranks below, then re-raised here
                failure = error
        if self.world_size > 1:
            message = broadcast_object(None if failure is None else f"{type(failure).__name__}: {failure}")
            if failure is None and message is not None:
                raise StateError(f"rank 0 could not write the state folder {str(folder)!r}: {message}")
        if failure is not None:
            raise failure

    def _log_memory(self) -> None:
        if isinstance(self.logger, TensorBoardLogger) and len(self.memory):
            targets = self.memory.storage["targets"][: len(self.memory)].cpu()
            self.logger.experiment.add_histogram("memory/classes", targets, self.learner.total_steps)
            self.logger.experiment.flush()
