"""Mixed precision on CPU (bf16-mixed): the step trains under autocast, the memory keeps float32 metadata."""

from __future__ import annotations

import pytest
import torch
from helpers import QUIET, sgd
from torch import nn

from retentive import DarkExperienceReplayModelUpdater, ExperienceReplayModelUpdater
from retentive.models import MLP


def test_bf16_mixed_update_stores_float32_logits_of_the_autocast_forward(split_small, tmp_path):
    # ("16-mixed" is for GPUs: on a CPU Lightning runs it as bf16-mixed, with a warning)
    precision, half = "bf16-mixed", torch.bfloat16
    train, test = split_small
    torch.manual_seed(0)
    updater = DarkExperienceReplayModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        sgd(0.1),
        memory_size=200,
        batch_size=32,
        alpha=0.5,
        beta=0.5,
        precision=precision,
        output_state_folder=tmp_path / "state",
        **QUIET,
    )
    model = updater.update(train[0])
    logits = updater.memory.storage["logits"]
    assert logits.dtype == torch.float32
    # they came from the half-precision forward: every value is exactly representable in it
    assert torch.equal(logits, logits.to(half).float())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32
    with torch.no_grad():
        accuracy = (model(test[0].inputs).argmax(1) == test[0].targets).float().mean()
    assert accuracy > 0.9


def test_full_precision_logits_are_not_rounded(split_small):
    train, _ = split_small
    updater = DarkExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=100, batch_size=32, precision="32", **QUIET
    )
    updater.update(train[0])
    logits = updater.memory.storage["logits"]
    assert not torch.equal(logits, logits.bfloat16().float())


def test_spawned_strategies_are_refused_before_training(split_small):
    train, _ = split_small
    updater = ExperienceReplayModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        sgd(),
        memory_size=50,
        **{**QUIET, "devices": 2, "strategy": "ddp_spawn"},
    )
    with pytest.raises(ValueError, match="strategy='ddp'"):
        updater.update(train[0])
    assert updater.updates_done == 0 and len(updater.memory) == 0
