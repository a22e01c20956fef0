"""Renate 0.5.2's own unit-test expectations, written for retentive's API.

Translated (Renate file -> tests here):
- test/renate/evaluation/metrics/test_regression_metrics.py: NFR, PFR, NFI, PFI on its fixture.
- test/renate/evaluation/metrics/test_classification.py: average accuracy, micro-average,
  forgetting, BWT, FWT at each task id, on its SAMPLE_CLASSIFICATION_RESULTS.
- test/renate/memory/test_buffer.py: max size respected, reservoir uniform, greedy balanced
  across save/load between updates, metadata get/set, infinite buffer keeps everything in order.
- test/renate/updaters/experimental/test_er.py: the memory batch and the memory size after an
  update for each (batch_size, memory_size, batch_memory_frac); component weights as passed.
- test/renate/updaters/test_model_updater.py: the model passed is the one updated; a seeded update
  is deterministic; early stopping only with a metric, a validation set and the flag.
"""

from __future__ import annotations

import copy

import pytest
import pytorch_lightning as pl
import torch
from helpers import QUIET, sgd
from torch import nn

import retentive as R
from retentive.evaluation import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    micro_average_accuracy,
    negative_flip_impact,
    negative_flip_rate,
    positive_flip_impact,
    positive_flip_rate,
)
from retentive.memory import GreedyClassBalancedPolicy, ReplayBuffer, ReservoirPolicy, UnboundedBuffer

# ---------------------------------------------------------------- metrics
NEW, OLD, GT = torch.tensor([1, 3, 0, 3]), torch.tensor([2, 1, 0, 2]), torch.tensor([3, 3, 0, 2])


def test_flip_metrics_on_renates_fixture():
    assert negative_flip_rate(NEW, OLD, GT) == 0.25
    assert positive_flip_rate(NEW, OLD, GT) == 0.25
    assert negative_flip_impact(NEW, OLD, GT) == 0.5
    assert positive_flip_impact(NEW, OLD, GT) == 0.5


def test_flip_metrics_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="same length, got 4, 3 and 4"):
        negative_flip_rate(NEW, OLD[:3], GT)


ACC = torch.tensor(
    [
        [0.9362000226974487, 0.6093000173568726, 0.3325999975204468],
        [0.8284000158309937, 0.9506999850273132, 0.3382999897003174],
        [0.4377000033855438, 0.48260000348091125, 0.9438999891281128],
    ],
    dtype=torch.float64,
)
INIT = [0.2, 0.1, 0.09]


def _upto(task: int) -> torch.Tensor:
    return ACC[: task + 1, : task + 1]


@pytest.mark.parametrize(
    "task, expected",
    [
        (0, 0.9362000226974487),
        (1, (0.8284000158309937 + 0.9506999850273132) / 2),
        (2, (0.4377000033855438 + 0.48260000348091125 + 0.9438999891281128) / 3),
    ],
)
def test_average_accuracy(task, expected):
    assert average_accuracy(_upto(task)) == pytest.approx(expected)


@pytest.mark.parametrize("task, expected", [(0, 0.9362000226974487), (1, 0.8691666722297668), (2, 0.6491599977016449)])
def test_micro_average_accuracy(task, expected):
    assert micro_average_accuracy(_upto(task), [10, 5, 10][: task + 1]) == pytest.approx(expected)


@pytest.mark.parametrize(
    "task, expected",
    [
        (0, 0.0),
        (1, 0.9362000226974487 - 0.8284000158937),
        (2, ((0.9362000226974487 - 0.4377000033855438) + (0.9506999850273132 - 0.48260000348091125)) / 2),
    ],
)
def test_forgetting(task, expected):
    assert forgetting(_upto(task)) == pytest.approx(expected)


@pytest.mark.parametrize(
    "task, expected",
    [
        (0, 0.0),
        (1, 0.8284000158309937 - 0.9362000226974487),
        (2, ((0.4377000033855438 - 0.9362000226974487) + (0.48260000348091125 - 0.9506999850273132)) / 2),
    ],
)
def test_backward_transfer(task, expected):
    assert backward_transfer(_upto(task)) == pytest.approx(expected)


@pytest.mark.parametrize(
    "task, expected",
    [(0, 0.0), (1, 0.6093000173568726 - 0.1), (2, ((0.6093000173568726 - 0.1) + (0.3382999897003174 - 0.09)) / 2)],
)
def test_forward_transfer(task, expected):
    assert forward_transfer(_upto(task), INIT[: task + 1]) == pytest.approx(expected)


# ---------------------------------------------------------------- buffers
def _rows(x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    y = torch.zeros(x.shape[0], dtype=torch.long) if y is None else y
    return {"inputs": x, "targets": y, "task_ids": torch.zeros_like(y)}


@pytest.mark.parametrize("policy", [ReservoirPolicy, GreedyClassBalancedPolicy])
@pytest.mark.parametrize("max_size, updates", [(1, 1), (20, 3), (100, 7)])
def test_buffer_respects_max_size(policy, max_size, updates):
    buffer = ReplayBuffer(max_size, policy=policy())
    assert len(buffer) == 0
    for i in range(updates):
        buffer.add(_rows(torch.rand(10, 3), torch.randint(3, (10,))))
        assert len(buffer) == min((i + 1) * 10, max_size)


def test_reservoir_is_uniform():
    """10k numbers through a 1000-slot reservoir: mean 5000, standard deviation of the mean ~91."""
    buffer = ReplayBuffer(1000, policy=ReservoirPolicy())
    for i in range(10):
        buffer.add(_rows((torch.arange(i * 1000, (i + 1) * 1000, dtype=torch.float) + 1).unsqueeze(1)))
    mean = float(buffer.storage["inputs"][: len(buffer)].mean())
    assert 5000 - 5 * 91 < mean < 5000 + 5 * 91


def test_greedy_is_balanced_across_save_and_load():
    buffer = ReplayBuffer(100, policy=GreedyClassBalancedPolicy())
    y = torch.arange(10).repeat_interleave(1000)[torch.randperm(10000, generator=torch.Generator().manual_seed(0))]
    for i in range(10):
        buffer.add(_rows(torch.ones(1000, 1), y[i * 1000 : (i + 1) * 1000]))
        state = copy.deepcopy(buffer.state_dict())
        buffer = ReplayBuffer(100, policy=GreedyClassBalancedPolicy())
        buffer.load_state_dict(state)
    counts = buffer.class_counts(10)
    assert bool((counts >= 9).all()) and bool((counts <= 11).all())
    stored = buffer.storage["targets"][: len(buffer)]
    assert torch.equal(torch.bincount(stored, minlength=10), counts)


def test_get_and_set_metadata():
    buffer = ReplayBuffer(10)
    buffer.add({**_rows(torch.rand(10, 3)), "foo": torch.ones(10)})
    assert torch.equal(buffer.storage["foo"][: len(buffer)], torch.ones(10))
    buffer.refresh(torch.arange(10), "foo", torch.full((10,), 2.0), gamma=0.0)  # set
    assert torch.equal(buffer.storage["foo"][: len(buffer)], torch.full((10,), 2.0))
    batch = buffer.sample(4)
    assert batch.inputs.shape == (4, 3) and torch.equal(batch.data["foo"], torch.full((4,), 2.0))


def test_infinite_buffer_keeps_everything_in_order():
    buffer = UnboundedBuffer()
    for i in range(10):
        buffer.add(_rows(torch.ones(10, 3) * i))
    assert len(buffer) == 100
    for i in range(10):
        assert torch.equal(buffer.storage["inputs"][i * 10 : (i + 1) * 10], torch.ones(10, 3) * i)


# ---------------------------------------------------------------- ER learners
@pytest.mark.parametrize(
    "batch_size, memory_size, frac", [(20, 10, 0.5), (30, 10, 0.34), (20, 100, 0.5), (10, 30, 0.1), (100, 10, 0.03)]
)
def test_er_memory_batch_and_size_after_update(batch_size, memory_size, frac):
    from retentive.data import TensorChunk

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 10))
    dataset = TensorChunk(torch.rand(100, 10), torch.randint(10, (100,)))
    updater = R.ExperienceReplayModelUpdater(
        model,
        nn.CrossEntropyLoss(reduction="none"),
        sgd(),
        memory_size=memory_size,
        batch_memory_frac=frac,
        batch_size=batch_size,
        **QUIET,
    )
    updater.update(dataset, task_id="default_task")
    memory_batch = int(frac * batch_size)
    assert updater.memory_batch_size == min(memory_size, memory_batch)
    if memory_batch <= memory_size:
        assert updater.memory_batch_size == memory_batch
    assert len(updater.memory) == memory_size
    drawn = updater.memory.sample(updater.memory_batch_size)
    assert drawn is None or drawn.inputs.shape[0] == updater.memory_batch_size


def test_er_component_weights_are_the_arguments():
    m = lambda: nn.Sequential(nn.Linear(784, 10))  # noqa: E731
    cls = R.CLSExperienceReplayModelUpdater(
        m(), nn.CrossEntropyLoss(), sgd(), memory_size=10, alpha=0.3, beta=0.2, **QUIET
    )
    assert [c.weight for c in cls.learner.components] == [0.3, 0.2]
    der = R.DarkExperienceReplayModelUpdater(
        m(), nn.CrossEntropyLoss(), sgd(), memory_size=10, alpha=0.4, beta=0.6, **QUIET
    )
    assert [(type(c).__name__, c.weight) for c in der.learner.components] == [
        ("LogitMSE", 0.4),
        ("MemoryCrossEntropy", 0.6),
    ]


# ---------------------------------------------------------------- model updaters
class Epochs(pl.Callback):
    def __init__(self) -> None:
        self.count = 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.count += 1


def test_the_model_passed_is_the_one_updated(split_small):
    train, _ = split_small
    from retentive.models import MLP

    model = MLP()
    before = copy.deepcopy(model.state_dict())
    returned = R.FineTuningModelUpdater(model, nn.CrossEntropyLoss(), sgd(), **QUIET).update(
        train[0].subset(torch.arange(64))
    )
    assert returned is model
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_seeded_update_is_deterministic(split_small):
    from retentive.models import MLP

    train, test = split_small
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = R.ExperienceReplayModelUpdater(
            MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=30, seed=3, **QUIET
        ).update(train[0].subset(torch.arange(100)))
        outputs.append(model(test[0].inputs[:20]))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("use_val", [True, False])
@pytest.mark.parametrize("early_stopping", [True, False])
@pytest.mark.parametrize("metric", [None, "val_loss"])
def test_early_stopping_only_with_metric_validation_and_flag(use_val, early_stopping, metric):
    """Renate: fewer than max_epochs exactly when a metric, a validation set and the flag are all
    given. (Renate warns and ignores early stopping without a validation set; retentive refuses it.)"""
    from retentive.data import TensorChunk

    pl.seed_everything(0, verbose=False)
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 10))
    train = TensorChunk(torch.rand(10, 10), torch.randint(10, (10,)))
    val = TensorChunk(torch.rand(10, 10), torch.randint(10, (10,)))
    epochs = Epochs()
    updater = R.FineTuningModelUpdater(
        model,
        nn.CrossEntropyLoss(reduction="none"),
        sgd(0.3),
        early_stopping_enabled=early_stopping,
        metric=metric,
        callbacks=[epochs],
        **{**QUIET, "max_epochs": 10},
    )
    if metric and early_stopping and not use_val:
        with pytest.raises(ValueError, match="no val_dataset"):
            updater.update(train, task_id="default_task")
        return
    updater.update(train, val_dataset=val if use_val else None, task_id="default_task")
    if metric and use_val and early_stopping:
        assert epochs.count < 10
    else:
        assert epochs.count == 10
