"""Renate's arguments mean what they mean in Renate: the class mask, early stopping and the best
epoch's state, the logged names, the scheduler interval, gradient clipping, and the bad inputs."""

from __future__ import annotations

import copy
import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from helpers import QUIET, sgd
from pytorch_lightning.loggers import Logger
from torch import nn

from retentive import (
    Component,
    DataError,
    ExperienceReplayModelUpdater,
    FineTuningModelUpdater,
    StateError,
)
from retentive.data import TensorChunk
from retentive.models import MLP
from retentive.state import load_state


# ---------------------------------------------------------------- mask_unused_classes
def _masked_ce(logits: torch.Tensor, targets: torch.Tensor, keep: list[int]) -> torch.Tensor:
    kept = logits[:, keep]
    return (-logits.gather(1, targets[:, None])[:, 0] + torch.logsumexp(kept, dim=1)).mean()


def test_mask_keeps_chunk_and_memory_classes_on_new_and_memory_logits():
    """One hand-computed step: chunk classes {0, 1}, memory holding class 2; class 3 is masked
    in the new-data loss and in the memory loss (Renate's rule), with loss normalisation."""
    model = nn.Linear(3, 4)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [2.0, 2.0, 2.0]]))
        model.bias.zero_()
    updater = ExperienceReplayModelUpdater(
        model,
        nn.CrossEntropyLoss(reduction="none"),
        sgd(),
        memory_size=2,
        batch_size=4,
        batch_memory_frac=0.5,
        mask_unused_classes=True,
        **QUIET,
    )
    xm = torch.tensor([[0.1, 0.2, 0.9], [0.1, 0.2, 0.9]])
    updater.memory.add({"inputs": xm, "targets": torch.tensor([2, 2]), "task_ids": torch.zeros(2, dtype=torch.long)})
    learner = updater.learner
    learner.set_chunk_classes(torch.tensor([0, 1]))
    assert learner.chunk_classes.tolist() == [0, 1, 2]
    x, y = torch.tensor([[0.5, 0.1, 0.3], [0.2, 0.7, 0.1]]), torch.tensor([0, 1])
    total, _ = learner.step_loss((x, y))
    with torch.no_grad():
        new = _masked_ce(model(x), y, [0, 1, 2])
        memory = _masked_ce(model(xm), torch.tensor([2, 2]), [0, 1, 2])
    expected = (new + memory) / 2
    assert torch.allclose(total, expected, atol=1e-6)
    # retentive's former rule (new logits to the chunk's classes, memory unmasked) differs here
    with torch.no_grad():
        former = (_masked_ce(model(x), y, [0, 1]) + F.cross_entropy(model(xm), torch.tensor([2, 2]))) / 2
    assert abs(float(former) - float(expected)) > 0.1


# ---------------------------------------------------------------- early stopping, best epoch
class WeightsAtValidation(pl.Callback):
    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []
        self.val_loss: list[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        self.weights.append(copy.deepcopy(pl_module.model.state_dict()))
        self.val_loss.append(float(trainer.callback_metrics["val_loss"]))


def _flipped(chunk: TensorChunk) -> TensorChunk:
    return TensorChunk(chunk.inputs, 1 - (chunk.targets - chunk.targets.min()) + chunk.targets.min())


def test_early_stopping_writes_the_best_epochs_state(split_small, tmp_path):
    """Trained on flipped labels, validated on true ones: val_loss is best after the first epoch
    and worsens; early stopping ends the fit before max_epochs and the state is epoch 0's."""
    train, test = split_small
    chunk = train[0].subset(torch.arange(200))
    recorder = WeightsAtValidation()
    torch.manual_seed(0)
    updater = FineTuningModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(reduction="none"),
        sgd(0.1),
        batch_size=20,
        metric="val_loss",
        mode="min",
        early_stopping_enabled=True,
        output_state_folder=tmp_path / "s0",
        callbacks=[recorder],
        **{**QUIET, "max_epochs": 12},
    )
    updater.update(_flipped(chunk), test[0], task_id="default_task")
    epochs = len(recorder.val_loss)
    assert epochs < 12  # stopped early (Lightning's patience 3 after the best epoch)
    best = min(range(epochs), key=lambda i: recorder.val_loss[i])
    assert best < epochs - 1
    written = load_state(tmp_path / "s0").model
    assert all(torch.equal(written[k], v) for k, v in recorder.weights[best].items())
    assert not all(torch.equal(written[k], v) for k, v in recorder.weights[-1].items())
    assert all(torch.equal(updater.model.state_dict()[k], v) for k, v in recorder.weights[best].items())


def test_metric_without_early_stopping_still_writes_the_best_epoch(split_small, tmp_path):
    train, test = split_small
    recorder = WeightsAtValidation()
    torch.manual_seed(0)
    updater = FineTuningModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        sgd(0.1),
        batch_size=20,
        metric="val_loss",
        output_state_folder=tmp_path / "s0",
        callbacks=[recorder],
        **{**QUIET, "max_epochs": 4},
    )
    updater.update(_flipped(train[0].subset(torch.arange(200))), test[0])
    assert len(recorder.val_loss) == 4  # no early stopping: every epoch ran
    best = min(range(4), key=lambda i: recorder.val_loss[i])
    written = load_state(tmp_path / "s0").model
    assert all(torch.equal(written[k], v) for k, v in recorder.weights[best].items())


# ---------------------------------------------------------------- logged names
class Captured(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "captured"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.append((step, dict(metrics)))

    def names(self) -> set[str]:
        return {name for _, metrics in self.metrics for name in metrics}

    def last(self, name: str) -> float:
        return [m[name] for _, m in self.metrics if name in m][-1]


class StepLosses(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def test_renate_and_retentive_names_are_logged(split_small):
    import torchmetrics

    train, test = split_small
    logger, steps = Captured(), StepLosses()
    accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes=10, average="micro")
    updater = ExperienceReplayModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(reduction="none"),
        sgd(),
        memory_size=50,
        batch_size=20,
        logged_metrics={"accuracy": accuracy},
        metric="val_accuracy",
        mode="max",
        callbacks=[steps],
        **{**QUIET, "logger": logger},
    )
    updater.update(train[0].subset(torch.arange(200)), test[0], task_id="default_task")
    names = logger.names()
    assert {"train_loss", "train_base_loss", "val_loss", "train_accuracy", "val_accuracy"} <= names  # Renate's
    assert {"loss/total", "loss/new", "val/accuracy"} <= names  # retentive's
    assert logger.last("train_loss") == pytest.approx(sum(steps.losses) / len(steps.losses), rel=1e-5)
    assert logger.last("val_accuracy") == pytest.approx(logger.last("val/accuracy"), abs=1e-6)


# ---------------------------------------------------------------- scheduler interval
class FinalLearningRate(pl.Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]


@pytest.mark.parametrize("interval", ["epoch", "step"])
def test_scheduler_interval(split_small, interval):
    train, _ = split_small
    seen = FinalLearningRate()
    updater = FineTuningModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        sgd(0.1),
        batch_size=50,
        callbacks=[seen],
        learning_rate_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
        learning_rate_scheduler_interval=interval,
        **{**QUIET, "max_epochs": 2},
    )
    updater.update(train[0].subset(torch.arange(150)))  # 3 steps an epoch, 2 epochs
    assert seen.lr == pytest.approx(0.1 * 0.5 ** (6 if interval == "step" else 2))


# ---------------------------------------------------------------- gradient clipping
class Amplify(Component):
    """Multiplies every gradient by 1000 before the optimizer step (so clipping must come after)."""

    def loss(self, ctx):
        return None

    def on_before_optimizer_step(self, ctx) -> None:
        for p in ctx.parameters():
            if p.grad is not None:
                p.grad.mul_(1000.0)


@pytest.mark.parametrize("algorithm", ["value", "norm", None])
def test_gradients_are_clipped_after_the_components_hooks(split_small, algorithm):
    train, _ = split_small
    chunk = train[0].subset(torch.arange(40))
    torch.manual_seed(0)
    model = MLP()
    before = [p.detach().clone() for p in model.parameters()]
    lr, clip = 0.1, 1e-3
    updater = ExperienceReplayModelUpdater(
        model,
        nn.CrossEntropyLoss(),
        sgd(lr),
        memory_size=10,
        batch_size=40,
        batch_memory_frac=0.0,
        components=[Amplify(1.0)],
        gradient_clip_val=clip,
        gradient_clip_algorithm=algorithm,
        **QUIET,
    )
    updater.update(chunk)  # one step
    deltas = [(p.detach() - b) / lr for p, b in zip(model.parameters(), before)]
    if algorithm == "value":
        assert max(float(d.abs().max()) for d in deltas) <= clip * (1 + 1e-4)
    else:  # Lightning's default algorithm is the norm
        norm = math.sqrt(sum(float(d.pow(2).sum()) for d in deltas))
        assert norm <= clip * (1 + 1e-3)
    assert updater.learner.gradient_clip_val == clip


def test_no_clipping_by_default_lets_the_amplified_step_through(split_small):
    train, _ = split_small
    torch.manual_seed(0)
    model = MLP()
    before = [p.detach().clone() for p in model.parameters()]
    ExperienceReplayModelUpdater(
        model,
        nn.CrossEntropyLoss(),
        sgd(0.1),
        memory_size=10,
        batch_size=40,
        batch_memory_frac=0.0,
        components=[Amplify(1.0)],
        **QUIET,
    ).update(train[0].subset(torch.arange(40)))
    assert max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before)) > 0.01


def test_deterministic_trainer_reaches_lightning():
    updater = FineTuningModelUpdater(MLP(), nn.CrossEntropyLoss(), sgd(), deterministic_trainer=True, **QUIET)
    try:
        updater._trainer()
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_ddp_strategy_on_one_cpu_device_trains_in_process(split_small):
    """Renate's default strategy "ddp" with devices=1 must just work: one process, no group."""
    train, _ = split_small
    updater = FineTuningModelUpdater(MLP(), nn.CrossEntropyLoss(), sgd(), **{**QUIET, "strategy": "ddp", "devices": 1})
    assert updater.hyperparameters["strategy"] == "ddp" and updater.trainer_kwargs["strategy"] == "auto"
    updater.update(train[0].subset(torch.arange(64)))
    assert updater.world_size == 1 and not torch.distributed.is_initialized()


# ---------------------------------------------------------------- bad input
def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match=r"metric 'val_acc' is not logged; expected one of train_loss, .*val_loss"):
        FineTuningModelUpdater(MLP(), nn.CrossEntropyLoss(), sgd(), metric="val_acc", **QUIET)


def test_metric_of_a_logged_metric_is_accepted():
    import torchmetrics

    FineTuningModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        sgd(),
        metric="val_f1",
        logged_metrics={"f1": torchmetrics.classification.MulticlassF1Score(10)},
        **QUIET,
    )


def test_mode_other_than_min_max_is_refused():
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'maximum'"):
        FineTuningModelUpdater(MLP(), nn.CrossEntropyLoss(), sgd(), metric="val_loss", mode="maximum", **QUIET)


def test_early_stopping_without_a_validation_set_fails_before_anything_is_written(split_small, tmp_path):
    train, _ = split_small
    model = MLP()
    before = copy.deepcopy(model.state_dict())
    updater = FineTuningModelUpdater(
        model,
        nn.CrossEntropyLoss(),
        sgd(),
        metric="val_loss",
        early_stopping_enabled=True,
        output_state_folder=tmp_path / "s0",
        **QUIET,
    )
    with pytest.raises(
        ValueError, match="early_stopping_enabled=True monitors 'val_loss' on the validation set, but no val_dataset"
    ):
        updater.update(train[0])
    assert not (tmp_path / "s0").exists() and all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_early_stopping_without_a_metric_warns_and_is_off():
    with pytest.warns(UserWarning, match="without a metric to monitor"):
        updater = FineTuningModelUpdater(MLP(), nn.CrossEntropyLoss(), sgd(), early_stopping_enabled=True, **QUIET)
    assert updater.early_stopping_enabled is False


@pytest.mark.parametrize("task_id", ["", "   "])
def test_empty_string_task_id_fails_before_anything_is_written(split_small, tmp_path, task_id):
    train, _ = split_small
    updater = FineTuningModelUpdater(MLP(), nn.CrossEntropyLoss(), sgd(), output_state_folder=tmp_path / "s0", **QUIET)
    with pytest.raises(DataError, match="task_id must be a non-empty string or an int >= 0, got"):
        updater.update(train[0], task_id=task_id)
    assert not (tmp_path / "s0").exists() and updater.updates_done == 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(learning_rate_scheduler_interval="batch"), "learning_rate_scheduler_interval must be one of"),
        (dict(gradient_clip_algorithm="l2"), "gradient_clip_algorithm must be one of"),
        (dict(gradient_clip_val=-1.0), "gradient_clip_val must be a number >= 0"),
        (dict(logged_metrics={"acc": lambda a, b: a}), r"logged_metrics\['acc'\] must be a torchmetrics.Metric"),
    ],
)
def test_other_bad_renate_arguments(arguments, message):
    with pytest.raises((ValueError, TypeError), match=message):
        FineTuningModelUpdater(MLP(), nn.CrossEntropyLoss(), sgd(), **arguments, **QUIET)


def test_missing_input_folder_stays_an_error_even_in_place(tmp_path):
    with pytest.raises(StateError, match="does not exist"):
        FineTuningModelUpdater(
            MLP(),
            nn.CrossEntropyLoss(),
            sgd(),
            input_state_folder=tmp_path / "typo",
            output_state_folder=tmp_path / "typo",
            **QUIET,
        )


def test_replayed_samples_get_the_train_transform_unless_a_buffer_transform_is_given(split_small):
    """Renate: ``buffer_transform = buffer_transform or train_transform``."""
    train, _ = split_small
    calls: list[int] = []

    def spy(x):
        calls.append(int(x.shape[0]))
        return x

    updater = ExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=32, batch_size=32, train_transform=spy, **QUIET
    )
    assert updater.learner.transforms["buffer"][0] is spy
    updater.update(train[0].subset(torch.arange(64)))
    # per-sample transforms: 64 new samples, plus 16 replayed in each of the 3 steps after the first
    assert len(calls) >= 64 + 3 * 16
    other = lambda x: x  # noqa: E731
    assert (
        ExperienceReplayModelUpdater(
            MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=32, train_transform=spy, buffer_transform=other, **QUIET
        ).learner.transforms["buffer"][0]
        is other
    )
