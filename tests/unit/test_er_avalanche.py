"""Renate's ExperienceReplayAvalancheModelUpdater, native: the loss is the mean cross-entropy over
the joint new + memory batch, and the memory is experience-balanced, filled at update end."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from er_family_support import QUIET
from torch import nn

import retentive as R
from retentive.data import TensorChunk
from retentive.models import MLP


def test_the_step_loss_is_the_mean_over_the_joint_batch():
    torch.manual_seed(0)
    updater = R.ExperienceReplayAvalancheModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        memory_size=50,
        batch_size=40,
        batch_memory_frac=0.25,
        **QUIET,
    )
    assert (updater.new_batch_size, updater.memory_batch_size) == (30, 10)
    updater.memory.add(
        {
            "inputs": torch.rand(50, 1, 28, 28),
            "targets": torch.randint(0, 10, (50,)),
            "task_ids": torch.zeros(50, dtype=torch.long),
        }
    )
    x, y = torch.rand(30, 1, 28, 28), torch.randint(0, 10, (30,))
    total, ctx = updater.learner.step_loss((x, y))
    joint_logits = torch.cat([ctx.outputs, ctx.memory_outputs])
    joint_targets = torch.cat([y, ctx.memory.targets])
    torch.testing.assert_close(total, nn.functional.cross_entropy(joint_logits, joint_targets))


def test_the_memory_is_filled_per_experience_when_each_update_ends():
    torch.manual_seed(0)
    updater = R.ExperienceReplayAvalancheModelUpdater(
        MLP(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), memory_size=9, batch_size=20, **QUIET
    )
    for task in range(2):
        updater.update(
            TensorChunk(torch.rand(30, 1, 28, 28), torch.tensor([2 * task, 2 * task + 1]).repeat(15)), task_id=task
        )
    tasks = updater.memory.storage["task_ids"][: len(updater.memory)].tolist()
    assert tasks == [0] * 5 + [1] * 4 and updater.memory.seen == 60


def test_loss_weighting_arguments_are_refused():
    with pytest.raises(TypeError, match="averages the loss over the joint batch; drop the argument 'loss_weight'"):
        R.ExperienceReplayAvalancheModelUpdater(
            MLP(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), memory_size=9, loss_weight=2.0, **QUIET
        )
