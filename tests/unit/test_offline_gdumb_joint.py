"""Offline-ER's loss weighting and end-of-update memory, GDumb's and Joint's re-initialisation and
training data, on real MNIST chunks."""

from __future__ import annotations

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from er_family_support import QUIET
from torch import nn

from retentive import GDumbModelUpdater, JointModelUpdater, OfflineExperienceReplayModelUpdater
from retentive.models import MLP, reinitialize_
from retentive.streams import Purpose, stream_seed


class Recorder(pl.Callback):
    """What the learner saw at each step, and the weights when training started."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.start_weights: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_weights.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        memory = pl_module.memory
        self.steps.append(
            {
                "terms": {k: float(v) for k, v in outputs["losses"].items()},
                "memory_size": len(memory),
                "memory_inputs": memory.storage["inputs"][: len(memory)].clone() if len(memory) else None,
                "batch": int(batch[0].shape[0]),
            }
        )


@pytest.fixture(scope="module")
def chunks(split_small):
    train, _ = split_small
    return train[0].subset(torch.arange(300)), train[1].subset(torch.arange(200))


def _sgd():
    return partial(torch.optim.SGD, lr=0.05)


def test_offline_er_weights_and_memory(chunks, tmp_path):
    first, second = chunks
    recorder = Recorder()
    updater = OfflineExperienceReplayModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        _sgd(),
        memory_size=100,
        batch_size=20,
        callbacks=[recorder],
        output_state_folder=tmp_path / "s0",
        **QUIET,
    )
    updater.update(first, task_id=0)
    assert updater.learner.loss_weight == 1.0
    assert all(step["memory_size"] == 0 for step in recorder.steps)  # nothing stored during the fit
    assert len(updater.memory) == 100 and updater.memory.seen == 300

    recorder.steps.clear()
    updater = OfflineExperienceReplayModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        _sgd(),
        memory_size=100,
        batch_size=20,
        callbacks=[recorder],
        input_state_folder=tmp_path / "s0",
        **QUIET,
    )
    memory_at_start = updater.memory.storage["inputs"][:100].clone()
    updater.update(second, task_id=1)
    a = 200 / (300 + 200)
    assert updater.new_data_weight(200) == pytest.approx(200 / 700)  # what the next chunk would get
    assert updater.learner.loss_weight == pytest.approx(a)
    for step in recorder.steps:
        assert torch.equal(step["memory_inputs"], memory_at_start)  # memory frozen during the update
        terms = step["terms"]
        memory_term = next(v for k, v in terms.items() if k.endswith("MemoryCrossEntropy"))
        assert terms["loss/total"] == pytest.approx(a * terms["loss/new"] + memory_term, rel=1e-5)
    assert step["batch"] == 10  # batch_size 20, half of it from memory (Renate's split)
    assert updater.memory.seen == 500
    stored = updater.memory.storage["targets"]
    assert set(stored.unique().tolist()) == {0, 1, 2, 3}  # the second chunk entered at the end


def test_offline_er_fixed_weight_and_refused_arguments(chunks):
    first, second = chunks
    updater = OfflineExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), _sgd(), memory_size=50, batch_size=20, loss_weight_new_data=0.8, **QUIET
    )
    updater.update(first)
    updater.update(second)
    assert updater.learner.loss_weight == 0.8
    assert updater.learner.components[0].weight == pytest.approx(0.2)
    with pytest.raises(TypeError, match="loss_weight"):
        OfflineExperienceReplayModelUpdater(MLP(), nn.CrossEntropyLoss(), _sgd(), memory_size=5, loss_weight=2.0)
    with pytest.raises(ValueError, match="1.5"):
        OfflineExperienceReplayModelUpdater(
            MLP(), nn.CrossEntropyLoss(), _sgd(), memory_size=5, loss_weight_new_data=1.5
        )


def _expected_reinit(seed: int, update: int) -> dict[str, torch.Tensor]:
    """The weights a re-initialisation gives under update ``update``'s global stream (retentive.streams)."""
    model = MLP()
    pl.seed_everything(stream_seed(seed, update, Purpose.GLOBAL, bits=32), workers=True, verbose=False)
    reinitialize_(model)
    return model.state_dict()


@pytest.mark.parametrize("kind", ["gdumb", "joint"])
def test_reinitialised_and_trained_on_memory_only(chunks, tmp_path, kind):
    first, second = chunks
    recorder = Recorder()
    seen = 0
    for i, chunk in enumerate((first, second)):
        arguments = dict(
            batch_size=10,
            callbacks=[recorder],
            seed=7,
            input_state_folder=tmp_path / f"s{i - 1}" if i else None,
            output_state_folder=tmp_path / f"s{i}",
            **QUIET,
        )
        if kind == "gdumb":
            updater = GDumbModelUpdater(
                MLP(), nn.CrossEntropyLoss(), _sgd(), memory_size=40, **{**arguments, "max_epochs": 3}
            )
        else:
            updater = JointModelUpdater(MLP(), nn.CrossEntropyLoss(), _sgd(), **arguments)
        steps_before = updater.learner.total_steps
        updater.update(chunk, task_id=i)
        seen += len(chunk)
        expected = _expected_reinit(7, i)
        assert all(torch.equal(recorder.start_weights[-1][k], v) for k, v in expected.items())
        steps = updater.learner.total_steps - steps_before
        # Renate's fine-tuning-equivalent epochs: as many steps as fine-tuning on the chunk takes;
        # GDumb's step takes batch_size minus Renate's memory share (batch_memory_frac 0.5): 5
        if kind == "gdumb":
            assert steps == min(math.ceil(len(chunk) / 5), math.ceil(len(updater.memory) / 5)) * 3
            counts = updater.memory.class_counts(4)
            assert counts.tolist() == ([20, 20, 0, 0] if i == 0 else [10, 10, 10, 10])
        else:
            assert steps == math.ceil(len(chunk) / 10)
            assert len(updater.memory) == seen and updater.memory.seen == seen


def test_models_that_cannot_be_reinitialised_are_refused():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = MLP()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.body(x) * self.scale

    with pytest.raises(ValueError, match=r"\['Scaled'\].*reset_parameters"):
        GDumbModelUpdater(Scaled(), nn.CrossEntropyLoss(), _sgd(), memory_size=10, **QUIET)
    with pytest.raises(TypeError, match="memory_size"):
        JointModelUpdater(MLP(), nn.CrossEntropyLoss(), _sgd(), memory_size=10, **QUIET)
