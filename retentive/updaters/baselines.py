"""Baselines: fine-tuning (the lower bound), Joint (the upper bound) and GDumb."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.utils.data import Dataset

from retentive.errors import DataError
from retentive.learner import OptimizerFactory
from retentive.memory.buffer import ReplayBuffer
from retentive.memory.policies import GreedyClassBalancedPolicy, InsertionPolicy
from retentive.memory.unbounded import UnboundedBuffer
from retentive.models.reinit import check_reinitializable, reinitialize_
from retentive.updaters.arguments import split_batch
from retentive.updaters.base import ModelUpdater
from retentive.updaters.chunks import add_chunk, memory_dataset
from retentive.updaters.settings import FixedMemorySettings, GDumbSettings, LossFunction, OwnMemorySettings
from retentive.updaters.signature import refusing

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack

_MEMORY_ARGUMENTS = ("components", "batch_memory_frac", "memory_batch_size", "memory_policy", "memory_insertion")
#: what an updater that trains on its memory alone sets itself: no loss terms, no replay batch, and
#: the chunk goes to the memory before training
_ON_MEMORY: dict[str, Any] = {"components": (), "batch_memory_frac": 0.0, "memory_insertion": "update_end"}


class _FineTuningEquivalentEpochs:
    """Renate's epoch for updaters that train on their memory (Joint, GDumb): an epoch takes as
    many steps as fine-tuning on the chunk would (``ceil(N_chunk / step batch)``, per rank), so
    ``max_epochs`` costs the same whatever the memory holds; a memory shorter than that is
    passed over once."""

    chunk_size: int | None
    new_batch_size: int

    def steps_per_epoch(self, world_size: int) -> int | None:
        if self.chunk_size is None:
            raise DataError(
                "an epoch as long as fine-tuning's needs the chunk's number of samples; give the stream a len()"
            )
        return max(1, math.ceil(self.chunk_size / (self.new_batch_size * max(1, world_size))))


class FineTuningModelUpdater(ModelUpdater):
    """Plain training on each chunk: no memory, no extra loss (it forgets; that is the point).

    Args:
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but the memory ones.
    """

    refused_arguments = refusing(
        ("memory_size", "components", "batch_memory_frac", "memory_batch_size"),
        "keeps no memory; drop the argument {name!r}",
    )

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        **kwargs: Unpack[FixedMemorySettings],
    ) -> None:
        super().__init__(model, loss_fn, optimizer, components=[], memory_size=0, batch_memory_frac=0.0, **kwargs)


class GDumbModelUpdater(_FineTuningEquivalentEpochs, ModelUpdater):
    """GDumb (Prabhu et al., ECCV 2020): a greedy class-balanced memory, and a model re-initialised
    at each update and trained on that memory alone.

    Each update first offers the whole chunk to the memory (see
    :class:`~retentive.memory.policies.GreedyClassBalancedPolicy`), then resets every layer with
    its ``reset_parameters()`` and trains ``max_epochs`` epochs on the memory. As in Renate, a
    step takes ``batch_size - min(memory_size, int(batch_memory_frac * batch_size))`` memory
    samples and an epoch as many steps as fine-tuning on the chunk would (both Renate's rules).

    Args:
        memory_size: the memory's capacity (required).
        batch_memory_frac: Renate's share of ``batch_size`` that its replay learners reserve for
            the memory; GDumb's step is the rest [0.5].
        batch_size: Renate's step size, of which GDumb's step takes the new-data share [32].
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but the memory
            batching ones and ``memory_policy``.
    """

    refused_arguments = refusing(
        _MEMORY_ARGUMENTS, "trains on its greedy class-balanced memory alone; drop the argument {name!r}"
    )

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        batch_memory_frac: float = 0.5,
        batch_size: int = 32,
        **kwargs: Unpack[GDumbSettings],
    ) -> None:
        if isinstance(memory_size, int) and memory_size < 1:
            raise ValueError(f"GDumb trains on its memory, so memory_size must be >= 1, got {memory_size}")
        check_reinitializable(model)
        new, _ = split_batch(batch_size, memory_size, batch_memory_frac, None)
        fixed: dict[str, Any] = {"batch_size": new, "memory_policy": GreedyClassBalancedPolicy(), **_ON_MEMORY}
        super().__init__(model, loss_fn, optimizer, memory_size=memory_size, **fixed, **kwargs)

    def training_data(self, train_dataset: Dataset, task_id: int) -> Dataset:
        add_chunk(self.memory, train_dataset, task_id)
        reinitialize_(self.model)
        return memory_dataset(self.memory)

    def fill_memory(self, train_dataset: Dataset, task_id: int) -> None:
        """Nothing left to insert: the chunk went to the memory before training."""


class JointModelUpdater(_FineTuningEquivalentEpochs, ModelUpdater):
    """Joint training, the upper bound: at each update the model is re-initialised and trained on
    every sample seen so far (kept in an unbounded memory that the state folder holds), an epoch
    being as many steps as fine-tuning on the chunk takes (Renate's epochs).

    Args:
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but the memory ones.
    """

    refused_arguments = refusing(("memory_size", *_MEMORY_ARGUMENTS), "keeps all data seen; drop the argument {name!r}")

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        **kwargs: Unpack[OwnMemorySettings],
    ) -> None:
        check_reinitializable(model)
        super().__init__(model, loss_fn, optimizer, memory_size=0, **_ON_MEMORY, **kwargs)

    def build_memory(self, memory_size: int, policy: InsertionPolicy | None, seed: int) -> ReplayBuffer:
        return UnboundedBuffer(seed=seed, backend=self.memory_backend, directory=self.memory_dir)

    def training_data(self, train_dataset: Dataset, task_id: int) -> Dataset:
        add_chunk(self.memory, train_dataset, task_id)
        reinitialize_(self.model)
        return memory_dataset(self.memory)

    def fill_memory(self, train_dataset: Dataset, task_id: int) -> None:
        """Nothing left to insert: the chunk went to the memory before training."""
