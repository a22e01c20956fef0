"""ModelUpdater: the life cycle of one update — load state, fit with Lightning, save state.

Subclasses choose the loss components (and the memory), and override only the extension points
declared in :mod:`~retentive.updaters.hooks`; everything else (batching, seeding, the Trainer, input
checks, the state folder) lives once in :mod:`retentive.updaters`: the update here, its arguments in
``arguments``, the state in ``persistence``, the fits in ``fitting``, a refit in ``refit``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger
from torch import Tensor, nn
from torch.utils.data import Dataset

from retentive.components.base import Batch, Component
from retentive.data.streaming import declared_length
from retentive.distributed import launched_as_global_zero
from retentive.errors import DataError
from retentive.gates import Gate
from retentive.gates.transaction import Transaction
from retentive.learner import OptimizerFactory, SchedulerFactory
from retentive.learner.runs import default_logger, name_run
from retentive.learner.transforms import Transform
from retentive.memory.policies import InsertionPolicy
from retentive.quiet import quiet_lightning
from retentive.registry import Registry
from retentive.state import check_output_folder
from retentive.state.discovery import warn_if_starting_over
from retentive.state.interrupts import keyboard_interrupts
from retentive.state.locking import OutputLock
from retentive.streams import Purpose, memory_seeds, stream_seed
from retentive.updaters.arguments import (
    NOT_HYPERPARAMETERS,
    RENATE_DEVICES,
    RENATE_MAX_EPOCHS,
    RENATE_STRATEGY,
    check_arguments,
    check_task_id,
    learner_settings,
    plain,
    split_batch,
    trainer_settings,
)
from retentive.updaters.chunks import chunk_batches
from retentive.updaters.collate import CollatedView
from retentive.updaters.fitting import FittingMixin
from retentive.updaters.hooks import UpdaterHooks
from retentive.updaters.identified import chunk_ids
from retentive.updaters.interruption import interrupts_at_step_boundaries
from retentive.updaters.persistence import PersistenceMixin
from retentive.updaters.refit import RefitMixin
from retentive.updaters.signature import bind_arguments, define_signature
from retentive.updaters.validation import check_chunk, check_dataset, check_transforms


class ModelUpdater(UpdaterHooks, PersistenceMixin, FittingMixin, RefitMixin):
    """Updates a model on one data chunk per :meth:`update` call without forgetting the earlier ones.

    Args:
        model: any ``nn.Module`` returning logits. With ``input_state_folder`` its weights are
            replaced by the saved ones, so build it the same way as for the first chunk.
        loss_fn: the task loss, e.g. ``nn.CrossEntropyLoss()`` (mean-reduced).
        optimizer: a callable taking the parameters, e.g. ``partial(torch.optim.SGD, lr=0.03)``;
            a fresh optimizer is built for each update, as in Renate.
        components: the weighted loss terms. A method puts its own first and those given to it
            (``components=``, e.g. EWC's next to ER's) after them. A method also takes every
            argument listed here that it does not refuse (``refused_arguments``), keyword-only.
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
        memory_backend, memory_dir: where the memory's rows reside: ``"grown"`` (default, on the device,
            allocated as it fills), ``"tensor"`` (the whole capacity at once) or ``"disk"`` (memory-mapped
            files under ``memory_dir``, resident size bounded); see docs/how-to/memory-backends.md.
        input_state_folder: the previous update's output; ``None`` for the first chunk. Either
            state folder may also be a URL (``s3://bucket/prefix``, any fsspec filesystem), fetched
            and published crash-safely by :mod:`retentive.state.remote`. The folder's weights are
            loaded into ``model`` (a deviation from Renate, which uses the model passed in as is
            and leaves loading the weights to the caller): a state folder is complete on its own,
            and its memory, stored logits and component state (Fisher matrices, class means)
            belong to its weights, which another model would silently break. ``None`` while the
            output folder's parent holds state folders of earlier updates warns
            (:class:`~retentive.state.discovery.StartsFreshWarning`) and starts a new model.
        output_state_folder: where this update's state goes; ``None``: not saved. It must not exist,
            unless it is the ``input_state_folder`` (an in-place update, as Renate pipelines run):
            then the new state is written beside it and swapped in atomically, and the version it
            replaced is kept for :func:`retentive.state.inplace.rollback` until the next update.
        max_epochs, accelerator, devices, strategy, precision, num_nodes: Lightning Trainer settings,
            with Renate's defaults (50 epochs, one device, ``"ddp"``, ``"32"``). On one device the
            strategy is ignored and training runs in this process, as in Renate; ``devices=None``
            means one device and ``strategy=None`` means ``"ddp"`` on several. With ``"ddp"`` on
            several devices or nodes, ``batch_size`` is per device and every rank keeps an
            identical replica of the memory (docs/how-to/ddp-and-gpus.md).
        learning_rate_scheduler_interval: ``"epoch"`` [default] or ``"step"``: when the scheduler steps.
        metric, mode: a logged name to monitor (``val_loss``, ``val_<logged metric>``,
            ``val/accuracy``, ``train_loss``, ...) and ``"min"`` [default] or ``"max"``. With a
            validation set, the state written is that of the epoch where ``metric`` was best.
        logged_metrics: torchmetrics metrics by name, logged as ``train_<name>`` and ``val_<name>``.
        early_stopping_enabled: stop when ``metric`` stops improving (Lightning's EarlyStopping);
            needs ``metric`` and a validation set.
        deterministic_trainer: Lightning's ``deterministic``.
        gradient_clip_val, gradient_clip_algorithm: clip gradients before each optimizer step
            (``"norm"`` by default or ``"value"``); ``None`` does not clip.
        seed: makes each update reproducible; update ``k`` uses ``seed + k``.
        logger: a Lightning logger; default a TensorBoard run ``tb_logs/<updater class>/<output state
            name>`` made here; ``False`` disables logging. A ``TensorBoardLogger`` given without a
            ``version`` also names its run after the output state; every update's steps continue
            from the previous update's (:mod:`retentive.learner.runs`).
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
        buffer_transform, buffer_target_transform: applied to each replayed batch; ``None`` [default]
            applies the training transforms (Renate's rule).
        memory_insertion: ``"step"`` [Renate's]: the new samples are offered to the memory after
            every step; ``"update_end"``: the whole chunk is offered once the update has trained
            (as Offline-ER and Avalanche's replay do), so replay batches hold earlier chunks only.
            Metadata (DER's logits) are then computed by the trained model in eval mode.
        refresh_memory_metadata: at the end of each update, recompute the stored metadata (DER's
            logits, POD's features) of the samples this update inserted, with the trained model in
            eval mode (as Avalanche's DER stores end-of-task logits) [False: keep the values
            computed at insertion, Renate's and the DER paper's].
    """

    #: base arguments this class sets itself or has no use for -> why (see :func:`refusing`); they
    #: are left out of its signature, and passing one is a TypeError giving the reason
    refused_arguments: ClassVar[Mapping[str, str]] = {}
    _arguments: dict[str, Any]  # every argument the call bound (set in __new__)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        define_signature(cls)  # its own arguments plus those it passes on: inspect.signature(cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> ModelUpdater:
        self = super().__new__(cls)
        # the one check of the call against the signature; the record of every argument it bound
        self._arguments = bind_arguments(cls, args, kwargs) or {}
        return self

    def __init__(  # Renate's 46 flat arguments, kept as they are; the body is short
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
        memory_backend: str = "grown",
        memory_dir: str | os.PathLike[str] | None = None,
        input_state_folder: str | os.PathLike[str] | None = None,
        output_state_folder: str | os.PathLike[str] | None = None,
        max_epochs: int = RENATE_MAX_EPOCHS,
        accelerator: str = "auto",
        devices: int | str | list[int] | None = RENATE_DEVICES,
        strategy: str | Any | None = RENATE_STRATEGY,
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
        learning_rate_scheduler_interval: str = "epoch",
        metric: str | None = None,
        mode: str = "min",
        logged_metrics: dict[str, Any] | None = None,
        early_stopping_enabled: bool = False,
        deterministic_trainer: bool = False,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        arguments = dict(locals())  # the flat arguments by name, before anything else is bound here
        del arguments["self"]
        self.early_stopping_enabled = check_arguments(arguments)
        self.metric, self.mode, self.model = metric, mode, model
        self.new_batch_size, self.memory_batch_size = split_batch(
            batch_size, memory_size, batch_memory_frac, memory_batch_size
        )
        self._locate_state(input_state_folder, output_state_folder, resume)
        self.memory_insertion, self.memory_input_dtype = memory_insertion, memory_input_dtype
        self.memory_backend, self.memory_dir = memory_backend, memory_dir
        self.refresh_memory_metadata = bool(refresh_memory_metadata)
        self.memory = self.build_memory(memory_size, memory_policy, seed)
        self.memory.policy.attach(self.model, self.memory.capacity)  # an update-end policy checks the model now
        settings = learner_settings(arguments, components)
        self.learner = self.build_learner(
            model=model, memory=self.memory, memory_batch_size=self.memory_batch_size, **settings
        )
        self.trainer_kwargs: dict[str, Any] = trainer_settings(arguments)
        self.seed, self.num_workers, self.callbacks = int(seed), int(num_workers), list(callbacks)
        if logger is None or logger is True:
            logger = default_logger(type(self).__name__, output_state_folder)
        name_run(logger, output_state_folder)  # one TensorBoard run per update, named after its state
        self.logger: Logger | None = logger or None
        record = getattr(self, "_arguments", {})
        self.hyperparameters: dict[str, Any] = {
            name: plain(value) for name, value in record.items() if name not in NOT_HYPERPARAMETERS
        }
        self.hyperparameters["precision"] = str(precision)
        self._load_input_state()

    # ---------------------------------------------------------------- helpers for methods
    def batches(self, dataset: Dataset, task_id: int | str, batch_size: int = 1024) -> Iterator[Batch]:
        """The whole chunk in order, as batches (what update-level hooks iterate)."""
        default = task_id if isinstance(task_id, int) else 0
        for rows in chunk_batches(dataset, default, batch_size):
            yield Batch(rows["inputs"], rows["targets"], rows["task_ids"])

    # ---------------------------------------------------------------- the update
    def update(
        self,
        train_dataset: Dataset,
        val_dataset: Dataset | None = None,
        train_dataset_collate_fn: Callable[[list[Any]], Any] | None = None,
        val_dataset_collate_fn: Callable[[list[Any]], Any] | None = None,
        task_id: int | str | None = None,
        *,
        gate: Gate | None = None,
        registry: Registry | None = None,
    ) -> nn.Module:
        """Train on one chunk, save the new state, and return the updated model.

        The signature is Renate's: the collate functions merge a list of samples into a batch
        ``(inputs, targets[, task_ids])``; ``task_id`` names the chunk's task, a non-empty string
        (Renate's form, recorded by name in the manifest) or an int >= 0 (the head a multi-head
        model routes to); ``None`` uses the update's index.

        The output folder is locked for the whole call: a second update writing the same folder
        fails at once with :class:`~retentive.errors.StateLockedError`. An in-place update commits
        only if the folder still holds the version this updater read (or last wrote), else
        :class:`~retentive.errors.StateConflictError`, checked before training and again at the
        commit. On any failure (bad data, a NaN loss, an interrupted fit, a failed write, a
        conflict) the model and memory are put back as they were before the call and no output is
        written; with ``resume=True`` the epochs completed so far stay in the checkpoint for the
        next attempt. Ctrl-C raises :class:`~retentive.state.interrupts.UpdateInterrupted` (a
        ``KeyboardInterrupt``) whose ``committed`` says whether the new state is in place: it is
        False unless the signal arrived during the commit, which is never split.

        ``gate`` (:class:`retentive.gates.Gate`): the new state is a candidate, promoted only if it
        passes on held-out data (report: :attr:`gate_report`); else it is kept as the model home's
        challenger, the updater holds the current version again, and ``GateRejected`` says why.
        ``registry`` (:class:`retentive.registry.Registry`) is checked before training and mirrors
        the decision (docs/how-to/gates-and-registry.md).
        """
        # Only global rank 0 writes (lock, checkpoints, output): under DDP the other ranks run this same
        # call and must not contend for the lock. Its Trainer does not exist yet: the launcher's
        # environment says which rank this is (on node 1, Lightning's own launcher's local rank 0 is not).
        writer = self.output_state_folder is not None and launched_as_global_zero()
        lock = OutputLock(self.output_state_folder).acquire() if writer else None  # type: ignore[arg-type]
        self._version_at_call = self.state_version  # changed by the commit, while signals are held
        try:
            if writer and not self.state_locations.output_url:  # a fresh start beside earlier states: said aloud
                warn_if_starting_over(self.input_state_folder, self.output_state_folder, self.updates_done)
            if lock is not None and self.in_place:  # fail before training, not after
                self._check_unchanged(
                    "Nothing was trained or written (build the updater again from the folder's "
                    "current state to update it)."
                )
            if train_dataset_collate_fn is not None:
                train_dataset = CollatedView(train_dataset, train_dataset_collate_fn, "training")
            if val_dataset is not None and val_dataset_collate_fn is not None:
                val_dataset = CollatedView(val_dataset, val_dataset_collate_fn, "validation")
            # Lightning's chatter quieted; its SystemExit for Ctrl-C made a KeyboardInterrupt again,
            # raised at a step boundary (never inside a logger's writer)
            with (
                quiet_lightning(),
                keyboard_interrupts(*self._interrupt_messages(), self._committed_in_call),
                interrupts_at_step_boundaries(self.callbacks),
            ):
                return self._update(train_dataset, val_dataset, task_id, lock, gate, registry)
        finally:
            if lock is not None:
                lock.release()

    def _update(
        self,
        train_dataset: Dataset,
        val_dataset: Dataset | None,
        task_id: int | str | None,
        lock: OutputLock | None,
        gate: Gate | None = None,
        registry: Registry | None = None,
    ) -> nn.Module:
        task = self._check_update(train_dataset, val_dataset, task_id)
        route = task if isinstance(task, int) else 0  # string task ids share the model's one head
        update = self.updates_done
        self._begin_lineage(train_dataset, update, task)
        seed = stream_seed(self.seed, update, Purpose.DATA_ORDER)  # the loader's shuffle
        backup = self._snapshot()
        chunk, transaction = train_dataset, Transaction.begin(self, gate, registry, train_dataset, update, route, lock)
        train_dataset = transaction.train_dataset  # less the gate's held-out share
        lineage = self._lineage_inputs["data"] if train_dataset is chunk else None
        self._identified = (train_dataset, route, chunk_ids(self.memory, train_dataset, update, lineage))
        session = self._resume_session(train_dataset, task, seed, lock)
        pl.seed_everything(stream_seed(self.seed, update, Purpose.GLOBAL, bits=32), workers=True, verbose=False)
        self.memory.reseed(*memory_seeds(self.seed, update))
        self.learner.begin_update(self.seed, update, task, partial(self.batches, train_dataset, route))
        try:
            self.chunk_size = declared_length(train_dataset)  # None: a stream of unstated length
            self.streamed_samples = 0  # such a stream's samples, counted as they are trained on
            if session is not None and session.trained:
                self._apply_state(session.checkpoint.state, session.checkpoint.folder)  # type: ignore[union-attr]
            else:
                self.run_fits(train_dataset, val_dataset, route, seed, session)
            self.after_fit(train_dataset, route)
            self.updates_done += 1
            self.task_order.append(task)
            seen = self.chunk_size if self.chunk_size is not None else self.streamed_samples
            self.tasks_seen[str(task)] = self.tasks_seen.get(str(task), 0) + seen
            self._log_memory()
            transaction.decide(self, lock)  # a rejected candidate: kept as the challenger, GateRejected
            if self.output_state_folder is not None:
                self._save(lock)
                transaction.promoted(self)
        except BaseException:
            if not self._committed_in_call():  # committed: the updater holds what the folder now holds
                self._put_back(backup)
            raise
        return self.model

    def _check_update(self, train_dataset: Dataset, val_dataset: Dataset | None, task_id: Any) -> int | str:
        """Refuse, before any training, what this update could not train on or write; returns its task.

        A growing model grows for the task first (idempotent per task): the checks probe it, and
        the rollback snapshot taken next covers its new structure.
        """
        if self.output_state_folder is not None and not self.in_place:
            check_output_folder(self.output_state_folder, self.input_state_folder)
        self.state_locations.check_output()  # an output URL must still hold no committed state
        try:
            task_id = check_task_id(task_id)
        except ValueError as error:
            raise DataError(str(error)) from None
        if self.early_stopping_enabled and val_dataset is None:
            raise ValueError(
                f"early_stopping_enabled=True monitors {self.metric!r} on the validation set, but no val_dataset "
                "was passed; pass one or turn early stopping off"
            )
        task: int | str = self.updates_done if task_id is None else task_id
        route = task if isinstance(task, int) else 0
        self.adapt_model([task])
        check_dataset(train_dataset, "training", self.memory)
        # the memory can hold no more than its rows plus the chunk after this update: refuse now,
        # before training, what the device could not hold then (MemoryBudgetError)
        self.memory.check_room(len(self.memory) + (declared_length(train_dataset) or self.memory.capacity))
        given = task_id if isinstance(task_id, int) else None
        check_chunk(self.model, train_dataset, "training", given, route, self.learner.transforms["train"][0])
        if val_dataset is not None:
            check_dataset(val_dataset, "validation", self.memory)
            check_chunk(self.model, val_dataset, "validation", None, route, self.learner.transforms["test"][0])
        check_transforms(self.model, self.learner.transforms, train_dataset, task)
        self.check_data(train_dataset)
        return task


define_signature(ModelUpdater)  # the root of every updater's signature (subclasses: __init_subclass__)
