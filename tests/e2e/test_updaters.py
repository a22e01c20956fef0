"""Updaters end to end on real MNIST, through state folders; bad input refused cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import QUIET, sgd
from torch import nn
from torch.utils.data import Dataset

from retentive import (
    DarkExperienceReplayModelUpdater,
    ExperienceReplayModelUpdater,
    FineTuningModelUpdater,
    load_model,
)
from retentive.data import TensorChunk
from retentive.errors import DataError, MemoryShapeError, NonFiniteLossError, StateError
from retentive.evaluation import accuracy_row, average_accuracy
from retentive.learner import Learner
from retentive.memory.identity import IDENTITY_KEYS
from retentive.models import MLP
from retentive.updaters import split_batch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _run_chunks(make_updater, train, test, tmp_path, name):
    rows, previous = [], None
    for i, chunk in enumerate(train):
        torch.manual_seed(0)
        out = tmp_path / name / f"chunk_{i}"
        model = make_updater(MLP(), previous, out).update(chunk, task_id=i)
        previous = out
        rows.append(accuracy_row(model, test))
    return torch.stack(rows)


def test_replay_forgets_less_than_fine_tuning(split_small, tmp_path):
    train, test = split_small
    kw = dict(batch_size=20, seed=0, **QUIET)
    ft = _run_chunks(
        lambda m, i, o: FineTuningModelUpdater(
            m, nn.CrossEntropyLoss(), sgd(0.1), input_state_folder=i, output_state_folder=o, **kw
        ),
        train,
        test,
        tmp_path,
        "ft",
    )
    er = _run_chunks(
        lambda m, i, o: ExperienceReplayModelUpdater(
            m,
            nn.CrossEntropyLoss(),
            sgd(0.1),
            memory_size=200,
            batch_memory_frac=0.5,
            input_state_folder=i,
            output_state_folder=o,
            **kw,
        ),
        train,
        test,
        tmp_path,
        "er",
    )
    der = _run_chunks(
        lambda m, i, o: DarkExperienceReplayModelUpdater(
            m,
            nn.CrossEntropyLoss(),
            sgd(0.1),
            memory_size=200,
            alpha=0.5,
            beta=0.5,
            batch_memory_frac=0.5,
            input_state_folder=i,
            output_state_folder=o,
            **kw,
        ),
        train,
        test,
        tmp_path,
        "der",
    )
    # fine-tuning keeps only the last two digits; replay keeps a good share of all ten
    assert average_accuracy(ft) < 0.25
    assert average_accuracy(er) > average_accuracy(ft) + 0.25
    assert average_accuracy(der) > average_accuracy(ft) + 0.25
    assert er[-1, 0] > 0.5 and der[-1, 0] > 0.5 and ft[-1, 0] < 0.05


def test_state_folder_restores_weights_memory_and_logits(split_small, tmp_path):
    train, _ = split_small
    torch.manual_seed(0)
    first = DarkExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=50, beta=0.0, output_state_folder=tmp_path / "s0", **QUIET
    )
    model = first.update(train[0])
    second = DarkExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=50, beta=0.0, input_state_folder=tmp_path / "s0", **QUIET
    )
    for key, value in model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value)
    assert set(second.memory.keys) == {"inputs", "targets", "task_ids", "logits", *IDENTITY_KEYS}
    for key in first.memory.keys:
        assert torch.equal(second.memory.storage[key], first.memory.storage[key])
    assert second.memory.seen == len(train[0]) and second.learner.total_steps == first.learner.total_steps
    assert torch.equal(load_model(MLP(), tmp_path / "s0").classifier.weight, model.classifier.weight)


WORKER = textwrap.dedent(
    """
    import sys, torch
    from functools import partial
    sys.path.insert(0, sys.argv[1])
    from conftest import small_split
    from retentive import DarkExperienceReplayModelUpdater
    from retentive.data import load_mnist
    from retentive.models import MLP
    torch.set_num_threads(1)
    train = small_split(load_mnist("train"), 300)
    updater = DarkExperienceReplayModelUpdater(MLP(), torch.nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.05),
        memory_size=100, alpha=0.5, beta=0.5, batch_size=20, input_state_folder=sys.argv[2], output_state_folder=sys.argv[3],
        accelerator="cpu", logger=False, enable_progress_bar=False, max_epochs=1, seed=7)
    updater.update(train[1], task_id=1)
    """
)


def test_two_chunks_across_processes_equal_one_process(mnist_train, tmp_path):
    from conftest import small_split

    train = small_split(mnist_train, 300)
    make = lambda **kw: DarkExperienceReplayModelUpdater(  # noqa: E731
        MLP(),
        nn.CrossEntropyLoss(),
        sgd(0.05),
        memory_size=100,
        alpha=0.5,
        beta=0.5,
        batch_size=20,
        seed=7,
        **QUIET,
        **kw,
    )
    torch.manual_seed(1)
    in_process = make()
    in_process.update(train[0], task_id=0)
    in_process.update(train[1], task_id=1)

    torch.manual_seed(1)
    make(output_state_folder=tmp_path / "s0").update(train[0], task_id=0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(
        [sys.executable, "-c", WORKER, str(ROOT / "tests"), str(tmp_path / "s0"), str(tmp_path / "s1")],
        check=True,
        env=env,
    )

    resumed = make(input_state_folder=tmp_path / "s1")
    for key, value in in_process.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    for key in in_process.memory.keys:
        assert torch.equal(resumed.memory.storage[key], in_process.memory.storage[key]), key
    assert resumed.updates_done == 2 and resumed.tasks_seen == {"0": 300, "1": 300}


class Views(Dataset):
    """Yields views into one large tensor, as many real datasets do."""

    def __init__(self, n: int):
        self.big = torch.rand(n, 1, 28, 28)
        self.labels = torch.randint(0, 10, (n,))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.big[i], self.labels[i]


def test_state_size_is_model_plus_memory(tmp_path):
    model = MLP()
    updater = DarkExperienceReplayModelUpdater(
        model, nn.CrossEntropyLoss(), sgd(), memory_size=500, batch_size=64, output_state_folder=tmp_path / "s", **QUIET
    )
    updater.update(Views(20_000))
    model_bytes = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    total = sum(p.stat().st_size for p in (tmp_path / "s").iterdir())
    assert total <= model_bytes + updater.memory.nbytes() + 64 * 1024


def test_split_batch_conventions():
    assert split_batch(64, 500, 0.5, None) == (32, 32)
    assert split_batch(64, 10, 0.5, None) == (54, 10)
    assert split_batch(10, 500, None, 128) == (10, 128)  # DER paper: 10 new + 128 memory
    assert split_batch(32, 0, None, None) == (32, 0)
    with pytest.raises(ValueError, match="not both"):
        split_batch(10, 500, 0.5, 128)
    with pytest.raises(ValueError, match="batch_memory_frac"):
        split_batch(10, 500, 1.0, None)


# ------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def trained_state(split_small, tmp_path_factory):
    train, _ = split_small
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("trained") / "s0"
    ExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=50, output_state_folder=folder, **QUIET
    ).update(train[0])
    return folder


@pytest.fixture()
def first_state(trained_state, tmp_path):
    """A copy of one ER state folder (trained once for the module) in this test's tmp_path."""
    shutil.copytree(trained_state, tmp_path / "s0")
    return tmp_path / "s0"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _er(tmp_path, state, model=None, **kw):
    return ExperienceReplayModelUpdater(
        model or MLP(),
        nn.CrossEntropyLoss(),
        sgd(),
        memory_size=50,
        input_state_folder=state,
        output_state_folder=tmp_path / "out",
        **QUIET,
        **kw,
    )


def test_empty_dataset(first_state, tmp_path):
    with pytest.raises(DataError, match="empty"):
        _er(tmp_path, first_state).update(TensorChunk(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)))
    assert not (tmp_path / "out").exists()


def test_sample_shape_differs_from_memory(first_state, tmp_path):
    before = _snapshot(first_state)
    with pytest.raises(MemoryShapeError, match=r"\(1, 32, 32\).*\(1, 28, 28\)"):
        _er(tmp_path, first_state).update(TensorChunk(torch.zeros(10, 1, 32, 32), torch.zeros(10, dtype=torch.long)))
    with pytest.raises(MemoryShapeError, match="float64"):
        _er(tmp_path, first_state).update(
            TensorChunk(torch.zeros(10, 1, 28, 28, dtype=torch.float64), torch.zeros(10, dtype=torch.long))
        )
    assert not (tmp_path / "out").exists() and _snapshot(first_state) == before


def test_label_outside_the_model_outputs(first_state, tmp_path):
    updater = _er(tmp_path, first_state)
    weights = {k: v.clone() for k, v in updater.model.state_dict().items()}
    seen = updater.memory.seen
    labels = torch.full((40,), 3, dtype=torch.long)
    labels[25] = 12
    with pytest.raises(DataError, match=r"label 12 .*is outside the model's 10 outputs"):
        updater.update(TensorChunk(torch.rand(40, 1, 28, 28), labels))
    assert not (tmp_path / "out").exists()
    # the failed update is rolled back: weights and memory as before the call
    assert all(torch.equal(updater.model.state_dict()[k], v) for k, v in weights.items())
    assert updater.memory.seen == seen


def test_nan_loss_stops_and_keeps_the_input_state(first_state, tmp_path):
    before = _snapshot(first_state)
    x = torch.rand(64, 1, 28, 28)
    x[40] = 3e38  # finite inputs whose logits overflow: the loss, not the data, goes non-finite
    with pytest.raises(NonFiniteLossError, match="nan|inf"):
        _er(tmp_path, first_state).update(TensorChunk(x, torch.zeros(64, dtype=torch.long)))
    assert not (tmp_path / "out").exists() and _snapshot(first_state) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".retentive-staging")]


def test_bad_state_folders(first_state, tmp_path):
    with pytest.raises(StateError, match="does not exist"):
        _er(tmp_path, tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    with pytest.raises(StateError, match="not a retentive state folder"):
        _er(tmp_path, tmp_path / "junk")
    # the same folder in and out is an in-place update (Renate's pipelines; tests/e2e/test_renate_inplace.py)
    assert ExperienceReplayModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        sgd(),
        memory_size=50,
        input_state_folder=first_state,
        output_state_folder=first_state,
        **QUIET,
    ).in_place
    with pytest.raises(StateError, match="does not fit the model"):
        _er(tmp_path, first_state, model=MLP(hidden=(50,)))
    with pytest.raises(StateError, match="memory_size=20"):
        ExperienceReplayModelUpdater(
            MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=20, input_state_folder=first_state, **QUIET
        )
    with pytest.raises(StateError, match="LogitMSE"):
        DarkExperienceReplayModelUpdater(
            MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=50, input_state_folder=first_state, **QUIET
        )
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ options


def test_ema_memory_update_refreshes_stored_logits(split_small):
    train, _ = split_small
    updater = DarkExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=64, batch_size=32, ema_memory_update_gamma=0.5, **QUIET
    )
    updater.update(train[0])
    stored = updater.memory.storage["logits"].clone()
    inserted = updater.memory.seen
    updater.update(train[1])
    kept = updater.memory.storage["logits"][: len(updater.memory)]
    # some samples of chunk 0 are still in memory, and their logits were refreshed
    still_there = updater.memory.storage["targets"] < 2
    assert still_there.any() and inserted == len(train[0])
    assert not torch.allclose(kept[still_there], stored[still_there])


def test_mask_unused_classes_restricts_the_new_data_loss():
    torch.manual_seed(0)
    model = nn.Linear(4, 5)
    learner = Learner(model, nn.CrossEntropyLoss(), sgd(), mask_unused_classes=True)
    learner.set_chunk_classes(torch.tensor([2, 3]))
    x, y = torch.randn(6, 4), torch.tensor([2, 3, 2, 3, 3, 2])
    loss, _ = learner.step_loss((x, y))
    expected = nn.functional.cross_entropy(model(x)[:, [2, 3]], y - 2)
    assert torch.isclose(loss, expected)


def test_tensorboard_logs_losses_accuracy_and_memory_histogram(split_small, tmp_path):
    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, test = split_small
    logger = TensorBoardLogger(str(tmp_path / "tb"), name="run")
    updater = DarkExperienceReplayModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        sgd(),
        memory_size=100,
        batch_size=20,
        logger=logger,
        log_every_n_steps=10,
        max_epochs=2,  # 100 steps an update: the second's steps must continue past the first's
        accelerator="cpu",
        enable_progress_bar=False,
    )
    updater.update(train[0], val_dataset=test[0])
    updater.update(train[1], val_dataset=test[1])
    events = EventAccumulator(logger.log_dir, size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss/new", "loss/total", "loss/0_LogitMSE", "loss/1_MemoryCrossEntropy", "lr", "val/accuracy"} <= scalars
    assert "memory/classes" in events.Tags()["histograms"]
    steps = [e.step for e in events.Scalars("loss/total")]
    assert steps == sorted(steps) and steps[-1] > len(train[0]) // 10  # one step axis across updates
    assert [e.value for e in events.Scalars("val/accuracy")][-1] > 0.8


def test_progress_bar_option():
    on = FineTuningModelUpdater(MLP(), nn.CrossEntropyLoss(), sgd(), accelerator="cpu", logger=False)
    off = FineTuningModelUpdater(MLP(), nn.CrossEntropyLoss(), sgd(), **QUIET)
    assert on._trainer().progress_bar_callback is not None
    assert off._trainer().progress_bar_callback is None
