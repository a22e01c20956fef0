"""The updater's extension points: the methods a continual-learning method may override, declared in
one place (as :class:`~retentive.components.base.Component` declares its hooks).

A method is usually components plus a constructor; when it also changes what an update does, it
overrides one or more of these and nothing else of :class:`~retentive.updaters.base.ModelUpdater`
(a test enforces it). When each runs::

    constructor      build_memory, build_learner
    state load       migrate_state -> adapt_model (every task the folder holds)
    update()         adapt_model (its task) -> check_data -> fits (the first Fit from training_data;
                     each Fit trained with steps_per_epoch) -> after_fit (fill_memory) ->
                     the state written, with manifest_entries

Every fit a method yields runs through the one fit path (:meth:`~retentive.updaters.fitting.
FittingMixin.fit`): resume checkpoints, the best epoch by the monitored metric, logging, the
data-parallel ranks. A method may call, besides these, :meth:`ModelUpdater.batches` (the chunk as
batches) and read the attributes the constructor sets (``model``, ``memory``, ``learner``, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from retentive.learner import Learner
from retentive.learner.passes import insert_chunk, refresh_metadata
from retentive.memory.buffer import ReplayBuffer
from retentive.memory.policies import InsertionPolicy
from retentive.memory.protocol import ReplayMemory
from retentive.models.protocol import adapt_model
from retentive.state import State

if TYPE_CHECKING:
    from retentive.updaters.host import UpdaterHost as _Host
else:
    _Host = object

#: the methods of ModelUpdater a subclass may override (besides ``__init__``)
EXTENSION_POINTS = (
    "build_memory",
    "build_learner",
    "adapt_model",
    "check_data",
    "training_data",
    "steps_per_epoch",
    "fits",
    "after_fit",
    "fill_memory",
    "manifest_entries",
    "migrate_state",
)


@dataclass(frozen=True)
class Fit:
    """One fit of an update, as :meth:`UpdaterHooks.fits` yields it.

    Args:
        data: what the fit iterates over.
        val_data: validation data: with ``metric``, the fit keeps its best epoch's state.
        epochs: the fit's epochs; ``None``: the updater's ``max_epochs``.
        batch_size: the samples of ``data`` a step takes; ``None``: the updater's new-sample batch.
    """

    data: Dataset
    val_data: Dataset | None = None
    epochs: int | None = None
    batch_size: int | None = None


class UpdaterHooks(_Host):
    """The extension points of :class:`~retentive.updaters.base.ModelUpdater`, with their defaults."""

    def build_memory(self, memory_size: int, policy: InsertionPolicy | None, seed: int) -> ReplayMemory:
        """In the constructor: the memory this updater keeps (Joint keeps an unbounded one,
        generative replay a generator)."""
        return ReplayBuffer(
            memory_size,
            policy=policy,
            seed=seed,
            input_dtype=self.memory_input_dtype,
            backend=self.memory_backend,
            directory=self.memory_dir,
        )

    def build_learner(self, **settings: Any) -> Learner:
        """In the constructor: the Learner (the LightningModule that steps). A method that changes
        the optimisation loop itself (MER, online meta-learning) returns its subclass, built with
        ``settings`` (the keyword arguments of :class:`~retentive.learner.Learner`); it may also
        change them, e.g. append a component of its own."""
        return Learner(**settings)

    def adapt_model(self, tasks: Sequence[int | str]) -> None:
        """Before a state folder loads (every task it holds) and before each update (its task):
        let a model that grows per task grow. Idempotent per task; the default calls
        ``model.adapt(task)`` where the model has it."""
        for task in tasks:
            adapt_model(self.model, task)

    def check_data(self, train_dataset: Dataset) -> None:
        """Before any training, after the chunk passed the common checks: refuse data this method
        cannot train on (raise :class:`~retentive.errors.DataError` or ``ValueError``)."""

    def training_data(self, train_dataset: Dataset, task_id: int) -> Dataset:
        """Before the first fit: what it iterates over; the chunk itself unless the method trains
        on its memory (GDumb, Joint). May set per-update loss weights (Offline-ER)."""
        return train_dataset

    def steps_per_epoch(self, world_size: int) -> int | None:
        """For each fit: the steps an epoch takes (``None``: one pass over the data). Joint and GDumb
        train on their memory for as many steps as fine-tuning on the chunk takes."""
        return None

    def fits(self, train_dataset: Dataset, val_dataset: Dataset | None, task_id: int) -> Iterator[Fit]:
        """The update's fits, in order; the default is one over :meth:`training_data`.

        A method with more training (PackNet's retraining after pruning, Repeated Distillation's
        expert, generative replay's sleep) yields further :class:`Fit` s; the code between two yields runs between the fits
        (pruning, filling the memory). Each runs through the one fit path, so resume, the best
        epoch and logging hold for every fit. With ``resume=True`` a fit that an interrupted run
        completed is skipped and its state restored, then the code after its yield runs again:
        it must give the same result from that state (be idempotent).
        """
        yield Fit(self.training_data(train_dataset, task_id), val_dataset)

    def after_fit(self, train_dataset: Dataset, task_id: int) -> None:
        """After the last fit, before the state is written: update-end work.

        The default: with ``memory_insertion="update_end"`` the chunk goes to a memory that takes
        samples (:meth:`fill_memory`; a generative memory learns it, although it stores no row); with ``refresh_memory_metadata`` the metadata of the samples this
        update inserted are recomputed by the trained model.
        """
        if self.memory_insertion == "update_end":
            if self.memory.takes_samples:
                self.fill_memory(train_dataset, task_id)
        elif self.refresh_memory_metadata and self.learner.inserted_slots:
            refresh_metadata(self.learner, torch.cat([s.cpu() for s in self.learner.inserted_slots]))

    def fill_memory(self, train_dataset: Dataset, task_id: int) -> None:
        """Update-end insertion: the chunk is offered to the memory, with metadata from the trained
        model. A method that fills its memory its own way (before training, or by herding in a
        component) overrides it to do nothing."""
        insert_chunk(self.learner, self.batches(train_dataset, task_id))

    def manifest_entries(self) -> dict[str, Any]:
        """When the state is written: entries the method adds to the manifest (PackNet's masks per
        task, a progressive network's columns). Plain JSON values."""
        return {}

    def migrate_state(self, state: State) -> State:
        """When a state loads (the input folder, a resume checkpoint), before it is applied:
        return it as this method reads it now, e.g. a folder written by an earlier version of
        the method (generative replay's generator moved from a component to the memory)."""
        return state
