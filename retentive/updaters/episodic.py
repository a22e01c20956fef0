"""Updaters with a per-task episodic memory filled at the end of each update: GEM, A-GEM and
Renate's Avalanche-backed experience replay, built natively (no Avalanche dependency).

The memory is split evenly between the tasks seen (the first tasks take the remainder); when a
task arrives, the earlier tasks keep the first rows of their share, and the new task's share is a
uniformly random subset of its chunk (drawn from the memory's insertion stream, so every
data-parallel replica draws the same). The memory therefore holds earlier tasks only while an
update trains, as in GEM, A-GEM and Avalanche's replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from retentive.components.base import Batch, Component
from retentive.components.exemplars import balanced_quotas, replace_memory
from retentive.components.projection import AveragedGradientEpisodicMemory, GradientEpisodicMemory
from retentive.components.replay import MemoryCrossEntropy
from retentive.data import nested
from retentive.learner import OptimizerFactory
from retentive.memory.identity import IDENTITY_KEYS
from retentive.memory.protocol import ReplayMemory
from retentive.updaters.base import ModelUpdater, split_batch
from retentive.updaters.settings import AvalancheSettings, LossFunction, OwnMemorySettings
from retentive.updaters.signature import refusing

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack


def task_balanced_rows(memory: ReplayMemory, batches: Iterable[Batch], task_id: int) -> tuple[dict[str, Tensor], int]:
    """The memory's next content, task by task, and the number of chunk samples offered."""
    chunk = list(batches)
    offered = sum(int(b.targets.shape[0]) for b in chunk)
    rows = {
        "inputs": nested.cat([b.inputs for b in chunk]),
        "targets": torch.cat([b.targets.long() for b in chunk]),
        "task_ids": torch.cat([b.task_ids.long() for b in chunk]),
        **{k: v.to(chunk[0].targets.device) for k, v in memory.chunk_identity(torch.arange(offered)).items()},
    }
    held: dict[str, Tensor] = {}
    if len(memory):
        held = {k: memory.decoded(k).cpu() for k in ("targets", "task_ids", *IDENTITY_KEYS)}
        held["inputs"] = memory.decoded("inputs").cpu()
    tasks = sorted(set(held["task_ids"].tolist() if held else []) | {int(task_id)})
    quotas = balanced_quotas(memory.capacity, len(tasks), "tasks")
    parts = []
    for task, quota in zip(tasks, quotas):
        if task == int(task_id):
            pool = rows
            if held and bool((held["task_ids"] == task).any()):  # the task seen again: pool old and new
                mine = (held["task_ids"] == task).nonzero().flatten()
                pool = {k: torch.cat([nested.index(held[k], mine), rows[k]]) for k in rows}
            n = int(pool["targets"].shape[0])
            order = torch.randperm(n, generator=memory.insert_generator)[:quota]
            parts.append({k: nested.index(v, order) for k, v in pool.items()})
        else:
            mine = (held["task_ids"] == task).nonzero().flatten()[:quota]
            parts.append({k: nested.index(v, mine) for k, v in held.items()})
    return {k: nested.cat([p[k] for p in parts]) for k in rows}, offered


class _TaskBalancedMemory(ModelUpdater):
    """Fills the memory task by task when an update ends (see the module docstring)."""

    def fill_memory(self, train_dataset: Dataset, task_id: int) -> None:
        rows, offered = task_balanced_rows(self.memory, self.batches(train_dataset, task_id), task_id)
        replace_memory(self.memory, rows, offered)

    def training_data(self, train_dataset: Dataset, task_id: int) -> Dataset:
        # a memory too small for the tasks seen fails before any training, not after it
        tasks = set(self.memory.decoded("task_ids").tolist()) if len(self.memory) else set()
        balanced_quotas(self.memory.capacity, len(tasks | {int(task_id)}), "tasks")
        return train_dataset


#: GEM and A-GEM fill the memory themselves and do not replay it in the loss
_NOT_REPLAYED: dict[str, Any] = {"memory_batch_size": 0, "memory_insertion": "update_end"}
_NO_MEMORY_BATCH = refusing(
    ("batch_memory_frac", "memory_batch_size", "memory_policy", "memory_insertion"),
    "fills its memory per task at the end of each update and does not replay it in the "
    "loss; drop the argument {name!r}",
)


class GradientEpisodicMemoryModelUpdater(_TaskBalancedMemory):
    """GEM (Lopez-Paz & Ranzato, NeurIPS 2017): each step's gradient is projected so that the loss
    on no past task's episodic memory increases (one constraint per past task).

    Args:
        memory_size: the episodic memory, shared evenly by the tasks seen (>= the number of tasks).
        memory_strength: GEM's margin ``γ`` on the dual variables [0.5, the paper's].
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but the memory
            batching ones (the memory is not replayed in the loss).
    """

    refused_arguments = _NO_MEMORY_BATCH

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        memory_strength: float = 0.5,
        components: Sequence[Component] = (),
        **kwargs: Unpack[OwnMemorySettings],
    ) -> None:
        own = GradientEpisodicMemory(memory_strength)
        super().__init__(model, loss_fn, optimizer, [own, *components], memory_size, **_NOT_REPLAYED, **kwargs)


class AveragedGradientEpisodicMemoryModelUpdater(_TaskBalancedMemory):
    """A-GEM (Chaudhry et al., ICLR 2019): each step's gradient is projected onto the half-space
    where it does not increase the loss on a random memory batch of ``sample_size``.

    Args:
        memory_size: the episodic memory, shared evenly by the tasks seen.
        sample_size: memory samples per reference gradient [64, Avalanche's default].
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but the memory
            batching ones.
    """

    refused_arguments = _NO_MEMORY_BATCH

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        sample_size: int = 64,
        components: Sequence[Component] = (),
        **kwargs: Unpack[OwnMemorySettings],
    ) -> None:
        own = AveragedGradientEpisodicMemory(sample_size)
        super().__init__(model, loss_fn, optimizer, [own, *components], memory_size, **_NOT_REPLAYED, **kwargs)


class ExperienceReplayAvalancheModelUpdater(_TaskBalancedMemory):
    """Renate's ``ExperienceReplayAvalancheModelUpdater`` (Avalanche's ``ReplayPlugin``), native.

    Each step trains on ``batch_size - m`` new and ``m = int(batch_memory_frac * batch_size)``
    memory samples with the cross-entropy averaged over all of them (Avalanche concatenates the
    two batches); the memory is experience-balanced and filled at the end of each update.

    Args:
        memory_size: the memory's capacity.
        batch_memory_frac: the share of each batch drawn from memory [0.5, Renate's default].
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but the loss
            weighting ones (the loss is the mean over the joint batch).
    """

    refused_arguments = refusing(
        ("loss_weight", "loss_normalization", "memory_batch_size", "memory_policy", "memory_insertion"),
        "averages the loss over the joint batch; drop the argument {name!r}",
    )

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        batch_memory_frac: float = 0.5,
        batch_size: int = 32,
        components: Sequence[Component] = (),
        **kwargs: Unpack[AvalancheSettings],
    ) -> None:
        new, memory = split_batch(batch_size, memory_size, batch_memory_frac, None)
        # (n * L_new + m * L_mem) / (n + m): the mean over the concatenated batch
        own = MemoryCrossEntropy(float(memory))
        fixed: dict[str, Any] = {"batch_size": batch_size, "batch_memory_frac": batch_memory_frac}
        fixed.update(loss_weight=float(new), memory_insertion="update_end")
        super().__init__(model, loss_fn, optimizer, [own, *components], memory_size, **fixed, **kwargs)
