"""A method written outside the package with only the declared extension points works end to end
on real data, reloads from its state folder, and its extra fit goes through the one fit path: it is
logged, keeps its best epoch, and resumes (PackNet's retraining, interrupted, ends identical)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from state_helpers import same_snapshot, snapshot
from torch import nn
from torch.utils.data import Dataset

from retentive import MemoryCrossEntropy, PackNetModelUpdater
from retentive.errors import DataError
from retentive.models import MLP
from retentive.state import load_state
from retentive.state.resume import checkpoint_root
from retentive.updaters import ModelUpdater
from retentive.updaters.chunks import memory_dataset
from retentive.updaters.hooks import Fit

pytestmark = pytest.mark.slow

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1, seed=0)


def _sgd() -> partial:
    return partial(torch.optim.SGD, lr=0.05)


class WarmUpReplay(ModelUpdater):
    """ER whose updates first rehearse the memory alone for ``warm_up_epochs`` (a user's method)."""

    def __init__(
        self, model: nn.Module, loss_fn: Any, optimizer: Any, memory_size: int, warm_up_epochs: int = 1, **kwargs: Any
    ) -> None:
        self.warm_up_epochs = warm_up_epochs
        self.fits_seen: list[int] = []
        super().__init__(model, loss_fn, optimizer, [MemoryCrossEntropy(1.0)], memory_size, **kwargs)

    def check_data(self, train_dataset: Dataset) -> None:
        if len(train_dataset) < 8:  # type: ignore[arg-type]
            raise DataError("WarmUpReplay needs at least 8 samples per chunk")

    def fits(self, train_dataset: Dataset, val_dataset: Dataset | None, task_id: int) -> Iterator[Fit]:
        if len(self.memory):
            self.fits_seen.append(len(self.memory))
            yield Fit(memory_dataset(self.memory), val_dataset, epochs=self.warm_up_epochs)
        self.fits_seen.append(len(train_dataset))  # type: ignore[arg-type]
        yield from super().fits(train_dataset, val_dataset, task_id)

    def manifest_entries(self) -> dict[str, Any]:
        return {"warm_up": {"epochs": self.warm_up_epochs, "fits": list(self.fits_seen)}}


class CountFits(pl.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(trainer.max_epochs)


def test_a_method_from_outside_the_package_runs_reloads_and_continues(chunks, tmp_path):
    count = CountFits()
    first = WarmUpReplay(
        MLP(), nn.CrossEntropyLoss(), _sgd(), 40, callbacks=[count], output_state_folder=tmp_path / "s0", **QUIET
    )
    first.update(chunks[0], task_id=0)
    assert count.epochs == [1] and first.fits_seen == [64]  # no memory yet: no warm-up fit
    assert load_state(tmp_path / "s0").manifest["warm_up"] == {"epochs": 1, "fits": [64]}
    second = WarmUpReplay(
        MLP(),
        nn.CrossEntropyLoss(),
        _sgd(),
        40,
        warm_up_epochs=2,
        callbacks=[count],
        input_state_folder=tmp_path / "s0",
        output_state_folder=tmp_path / "s1",
        **QUIET,
    )
    assert same_snapshot({"m": second.model.state_dict()}, {"m": first.model.state_dict()})  # reloaded
    assert len(second.memory) == 40 and second.updates_done == 1
    second.update(chunks[1], task_id=1)
    assert count.epochs == [1, 2, 1]  # the warm-up over the memory, then the chunk's fit
    state = load_state(tmp_path / "s1")
    assert state.manifest["warm_up"] == {"epochs": 2, "fits": [40, 64]}
    assert state.manifest["updates_done"] == 2 and state.manifest["hyperparameters"]["warm_up_epochs"] == 2
    third = WarmUpReplay(MLP(), nn.CrossEntropyLoss(), _sgd(), 40, input_state_folder=tmp_path / "s1", **QUIET)
    with pytest.raises(DataError, match="at least 8 samples"):
        third.update(chunks[1].subset(torch.arange(4)), task_id=1)
    assert third.updates_done == 2 and third.fits_seen == []  # refused before any training


class Interrupt(Exception):
    pass


class CrashInRetraining(pl.Callback):
    """Crashes PackNet's retraining fit at the end of its second epoch (its first is checkpointed)."""

    def __init__(self, updater: list[PackNetModelUpdater]) -> None:
        self.updater = updater

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.updater and self.updater[0].masking.phase == "retrain" and trainer.current_epoch == 1:
            raise Interrupt("crash in the retraining")


def _packnet(output, callbacks=(), **extra) -> PackNetModelUpdater:
    settings = {**QUIET, "max_epochs": 2}
    return PackNetModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        _sgd(),
        post_prune_epochs=3,
        output_state_folder=output,
        resume=True,
        callbacks=list(callbacks),
        **settings,
        **extra,
    )


def test_packnets_retraining_resumes_from_its_last_epoch_and_ends_identical(chunks, tmp_path):
    chunk = chunks[0].subset(torch.arange(48))
    torch.manual_seed(0)
    _packnet(tmp_path / "clean").update(chunk, task_id=0)
    holder: list[PackNetModelUpdater] = []
    torch.manual_seed(0)
    crashed = _packnet(tmp_path / "s0", [CrashInRetraining(holder)])
    holder.append(crashed)
    with pytest.raises(Interrupt):
        crashed.update(chunk, task_id=0)
    # the two epochs of the first fit and one of the retraining: epoch 3 of the update's 5
    assert [p.name for p in checkpoint_root(tmp_path / "s0").iterdir()] == ["epoch-0003"]
    torch.manual_seed(0)
    count = CountFits()
    resumed = _packnet(tmp_path / "s0", [count])
    resumed.update(chunk, task_id=0)
    assert count.epochs == [2]  # only the retraining's last two epochs ran
    clean, again = load_state(tmp_path / "clean"), load_state(tmp_path / "s0")
    assert same_snapshot({"m": clean.model, "l": clean.learner}, {"m": again.model, "l": again.learner})
    assert same_snapshot(snapshot(resumed)["model"], dict(again.model))  # the updater holds what it wrote
    assert not checkpoint_root(tmp_path / "s0").exists()
