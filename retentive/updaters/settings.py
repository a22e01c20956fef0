"""The keyword arguments an updater passes on to :class:`~retentive.updaters.base.ModelUpdater`,
as typed dictionaries, so that type checkers and IDEs see them (``**kwargs: Unpack[...]``).

At run time the class's signature (:mod:`retentive.updaters.signature`) is what counts; a test
checks that each method's ``Unpack[...]`` names exactly the keyword-only arguments of its
signature. :class:`UpdaterSettings` holds the arguments every updater passes on (the Trainer, the
state folders, the transforms, monitoring); each method adds the few memory and loss arguments it
takes, from the one-key dictionaries below.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger
from torch import Tensor

from retentive.components.base import Component
from retentive.learner import SchedulerFactory
from retentive.learner.transforms import Transform
from retentive.memory.policies import InsertionPolicy

#: a task loss: ``loss_fn(logits, targets)``, mean-reduced or per sample
LossFunction = Callable[[Tensor, Tensor], Tensor]


class UpdaterSettings(TypedDict, total=False):
    """What every updater passes on: the Trainer, the state folders, the transforms, monitoring."""

    mask_unused_classes: bool
    learning_rate_scheduler: SchedulerFactory | None
    memory_input_dtype: str | None
    memory_backend: str
    memory_dir: str | os.PathLike[str] | None
    input_state_folder: str | os.PathLike[str] | None
    output_state_folder: str | os.PathLike[str] | None
    max_epochs: int
    accelerator: str
    devices: int | str | list[int] | None
    strategy: str | Any | None
    precision: str | int
    num_nodes: int
    logger: Logger | bool | None
    enable_progress_bar: bool
    log_every_n_steps: int
    num_workers: int
    callbacks: Sequence[pl.Callback]
    resume: bool
    train_transform: Transform | None
    train_target_transform: Transform | None
    test_transform: Transform | None
    test_target_transform: Transform | None
    buffer_transform: Transform | None
    buffer_target_transform: Transform | None
    learning_rate_scheduler_interval: str
    metric: str | None
    mode: str
    logged_metrics: dict[str, Any] | None
    early_stopping_enabled: bool
    deterministic_trainer: bool
    gradient_clip_val: float | None
    gradient_clip_algorithm: str | None


# ---------------------------------------------------------------- what methods add, one each
class Components(TypedDict, total=False):
    components: Sequence[Component]


class MemorySize(TypedDict, total=False):
    memory_size: int


class BatchSize(TypedDict, total=False):
    batch_size: int


class BatchMemoryFrac(TypedDict, total=False):
    batch_memory_frac: float | None


class MemoryBatchSize(TypedDict, total=False):
    memory_batch_size: int | None


class LossWeight(TypedDict, total=False):
    loss_weight: float


class LossNormalization(TypedDict, total=False):
    loss_normalization: bool


class EmaGamma(TypedDict, total=False):
    ema_memory_update_gamma: float


class MemoryPolicy(TypedDict, total=False):
    memory_policy: InsertionPolicy | None


class Seed(TypedDict, total=False):
    seed: int


class MemoryInsertion(TypedDict, total=False):
    memory_insertion: str


class RefreshMetadata(TypedDict, total=False):
    refresh_memory_metadata: bool


# ---------------------------------------------------------------- groups of them
class LossMixing(LossWeight, LossNormalization, EmaGamma, total=False):
    """How the step's loss terms combine, and the EMA refresh of stored metadata."""


class ReplayBatch(BatchSize, BatchMemoryFrac, MemoryBatchSize, total=False):
    """The step's batch: new samples and replayed ones."""


class MemoryChoice(MemoryPolicy, MemoryInsertion, total=False):
    """What the memory keeps and when new samples reach it."""


class OwnMemorySettings(UpdaterSettings, BatchSize, LossMixing, Seed, RefreshMetadata, total=False):
    """What a method that fills its memory itself at update end (GDumb, Joint, GEM, A-GEM) passes on:
    no components, memory batch split, policy or insertion of the user's."""


class FixedMemorySettings(OwnMemorySettings, MemoryChoice, total=False):
    """Every argument but the memory's size, its batch split and ``components``, which the method
    fixes itself (fine-tuning keeps no memory; RAR names them its own way)."""


class ReplaySettings(FixedMemorySettings, BatchMemoryFrac, MemoryBatchSize, total=False):
    """Every argument but ``memory_size`` and ``components``, which a replay method lists itself (it
    requires the first and puts its own loss terms before the user's)."""


class OwnComponentsSettings(ReplaySettings, MemorySize, total=False):
    """Every argument but ``components`` (which the method takes, or sets, itself)."""


class AllSettings(OwnComponentsSettings, Components, total=False):
    """Every :class:`~retentive.updaters.base.ModelUpdater` argument but the model, loss and optimizer."""


# ---------------------------------------------------------------- what each method passes on
class GDumbSettings(UpdaterSettings, LossMixing, Seed, RefreshMetadata, total=False):
    """What GDumb passes on: its memory, its batch and its insertion are its own."""


class AvalancheSettings(UpdaterSettings, EmaGamma, Seed, RefreshMetadata, total=False):
    """What Avalanche's replay passes on: the loss is the mean over the joint batch, the memory its own."""


class ICaRLSettings(UpdaterSettings, ReplayBatch, LossNormalization, EmaGamma, Seed, RefreshMetadata, total=False):
    """What iCaRL passes on: its BCE replaces the task loss, its herding the memory policy."""


class PromptSettings(OwnMemorySettings, MemoryInsertion, total=False):
    """What L2P and S-Prompts pass on: no memory."""


class PromptReplaySettings(
    UpdaterSettings, BatchSize, MemoryBatchSize, MemoryPolicy, Seed, RefreshMetadata, total=False
):
    """What L2P with replay passes on to Offline-ER."""


class DistillationSettings(UpdaterSettings, BatchSize, MemoryPolicy, total=False):
    """What RD passes on: its memory is filled and replayed its own way, with its own loss."""


class OfflineSettings(UpdaterSettings, ReplayBatch, MemoryPolicy, Seed, RefreshMetadata, total=False):
    """What Offline-ER passes on: no loss weighting (``a`` replaces it), no components or insertion."""
