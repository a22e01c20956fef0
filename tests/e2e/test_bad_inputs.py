"""The bad-input catalogue (docs/reliability.md, "Bad input"): each case gets a clear error or a documented safe
behaviour, and nothing is lost: on an error the model, memory and counters are as before the
call, no output folder (or staging folder, or lock file) appears, and the input folder is
byte-identical. The numbers match the table in docs/reliability.md."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from helpers import QUIET, sgd
from state_helpers import der, hidden_entries, same_snapshot, snapshot, tree_digest
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from retentive import (
    DataError,
    ExperienceReplayModelUpdater,
    MemoryShapeError,
    NonFiniteLossError,
    StateError,
    load_model,
)
from retentive.data import TensorChunk
from retentive.models import MLP
from retentive.state import load_state

pytestmark = pytest.mark.slow


class Plain(Dataset):
    """A dataset that hides its tensors, so only per-sample and per-batch checks can see inside."""

    def __init__(self, items) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


class NoLength(Dataset):
    """Indexable but without ``__len__``, and not an ``IterableDataset`` either: neither kind of chunk."""

    def __getitem__(self, index):
        return torch.zeros(1, 28, 28), 0


@pytest.fixture(scope="module")
def world(split_small, tmp_path_factory):
    train, _ = split_small
    chunk0, chunk1 = train[0].subset(torch.arange(64)), train[1].subset(torch.arange(64))
    root = tmp_path_factory.mktemp("bad")
    der(root / "s0").update(chunk0, task_id=0)
    return root / "s0", chunk1


@pytest.fixture
def refused(world, tmp_path):
    """``refused(updater, dataset, error, match, **update_kwargs)``: the call fails and nothing is lost."""
    state0, _ = world
    input_digest = tree_digest(state0)

    def check(updater, dataset, error, match, **kwargs):
        before = snapshot(updater)
        with pytest.raises(error, match=match):
            updater.update(dataset, **kwargs)
        assert same_snapshot(snapshot(updater), before)
        if updater.output_state_folder is not None:
            assert not updater.output_state_folder.exists()
            assert hidden_entries(updater.output_state_folder.parent) == []
        assert tree_digest(state0) == input_digest

    return check


def _chunk(x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None = None) -> TensorChunk:
    return TensorChunk(x, y, t)


# ---------------------------------------------------------------- the chunk itself
def test_01_empty_chunk(world, refused, tmp_path):
    state0, chunk = world
    empty = _chunk(chunk.inputs[:0], chunk.targets[:0])
    refused(der(tmp_path / "s1", state0), empty, DataError, "training dataset is empty")


def test_02_dataset_without_a_length(world, refused, tmp_path):
    # an IterableDataset is a stream now (tests/unit/test_streaming.py); an indexable dataset without
    # a length is still neither kind of chunk
    state0, _ = world
    refused(
        der(tmp_path / "s1", state0), NoLength(), DataError, "map-style Dataset with a length, or an IterableDataset"
    )


def test_03_samples_that_are_not_tuples(world, refused, tmp_path):
    state0, chunk = world
    refused(der(tmp_path / "s1", state0), Plain(chunk.inputs), DataError, r"\(x, y\) or \(x, y, task_id\) tuples")


def test_04_inputs_that_are_not_tensors(world, refused, tmp_path):
    state0, chunk = world
    items = [(x.numpy(), int(y)) for x, y in zip(chunk.inputs[:8], chunk.targets[:8])]
    refused(der(tmp_path / "s1", state0), Plain(items), DataError, "inputs must be tensors, got ndarray")


def test_05_inputs_of_a_shape_the_model_cannot_take(refused, tmp_path):
    chunk = _chunk(torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    refused(der(tmp_path / "s1"), chunk, DataError, r"model cannot run on a training input of shape \(3, 32, 32\)")


def test_06_inputs_of_a_dtype_the_model_cannot_take(refused, tmp_path):
    chunk = _chunk(torch.randint(0, 255, (16, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (16,)))
    refused(der(tmp_path / "s1"), chunk, DataError, r"model cannot run .* dtype torch.uint8")


def test_07_inputs_of_another_shape_than_the_memory_holds(world, refused, tmp_path):
    state0, chunk = world
    small = _chunk(torch.rand(16, 1, 14, 14), chunk.targets[:16])
    refused(
        der(tmp_path / "s1", state0),
        small,
        MemoryShapeError,
        r"shape \(1, 14, 14\) .* memory holds inputs of shape \(1, 28, 28\)",
    )


def test_08_inputs_of_another_dtype_than_the_memory_holds(world, refused, tmp_path):
    state0, chunk = world
    refused(
        der(tmp_path / "s1", state0),
        _chunk(chunk.inputs.double(), chunk.targets),
        MemoryShapeError,
        "dtype torch.float64",
    )


def test_09_float_labels(world, refused, tmp_path):
    state0, chunk = world
    refused(
        der(tmp_path / "s1", state0),
        _chunk(chunk.inputs, chunk.targets.float()),
        DataError,
        "targets must be integer class indices, got dtype torch.float32",
    )


def test_10_label_beyond_the_models_outputs(world, refused, tmp_path):
    state0, chunk = world
    targets = chunk.targets.clone()
    targets[5] = 10
    refused(
        der(tmp_path / "s1", state0),
        _chunk(chunk.inputs, targets),
        DataError,
        r"label 10 \(sample 5\) is outside the model's 10 outputs \(expected 0..9\)",
    )


def test_10b_label_beyond_the_outputs_in_a_dataset_hiding_its_labels(world, refused, tmp_path):
    state0, chunk = world
    items = [(x, int(y)) for x, y in zip(chunk.inputs, chunk.targets)]
    items[40] = (items[40][0], 12)  # not the first sample: caught in the training step
    refused(der(tmp_path / "s1", state0), Plain(items), DataError, r"label 12 is outside the model's 10 outputs")


def test_10c_label_beyond_the_outputs_in_a_tensor_dataset(world, refused, tmp_path):
    """torch's TensorDataset exposes its tensors as ``tensors``: checked whole, before training."""
    state0, chunk = world
    targets = chunk.targets.clone()
    targets[40] = 10
    refused(
        der(tmp_path / "s1", state0),
        TensorDataset(chunk.inputs, targets),
        DataError,
        r"label 10 \(sample 40\) is outside the model's 10 outputs \(expected 0..9\); 1 of 64 labels is outside 0..9 \(10\)",
    )


def test_11_negative_label(world, refused, tmp_path):
    state0, chunk = world
    targets = chunk.targets.clone()
    targets[0] = -1
    refused(der(tmp_path / "s1", state0), _chunk(chunk.inputs, targets), DataError, "label -1")


def test_12_one_hot_labels(world, refused, tmp_path):
    state0, chunk = world
    one_hot = nn.functional.one_hot(chunk.targets, 10)
    refused(
        der(tmp_path / "s1", state0),
        _chunk(chunk.inputs, one_hot),
        DataError,
        r"one class index per sample, got shape \(64, 10\)",
    )


def test_13_nan_in_inputs(world, refused, tmp_path):
    state0, chunk = world
    inputs = chunk.inputs.clone()
    inputs[7, 0, 3, 3] = float("nan")
    inputs[9, 0, 0, 0] = float("inf")
    refused(
        der(tmp_path / "s1", state0),
        _chunk(inputs, chunk.targets),
        DataError,
        r"NaN or infinite values in 2 samples \(first: sample 7\)",
    )


def test_13b_nan_in_the_inputs_of_a_tensor_dataset(world, refused, tmp_path):
    state0, chunk = world
    inputs = chunk.inputs.clone()
    inputs[30, 0, 5, 5] = float("nan")
    refused(
        der(tmp_path / "s1", state0),
        TensorDataset(inputs, chunk.targets),
        DataError,
        r"NaN or infinite values in 1 samples \(first: sample 30\)",
    )


def test_14_inf_in_inputs_of_a_dataset_hiding_its_tensors(world, refused, tmp_path):
    state0, chunk = world
    items = [(x.clone(), int(y)) for x, y in zip(chunk.inputs, chunk.targets)]
    items[30][0][0, 5, 5] = float("inf")  # not the first sample: the loss turns non-finite in training
    refused(der(tmp_path / "s1", state0), Plain(items), NonFiniteLossError, "training loss became nan")


def test_15_a_loss_that_diverges(world, refused, tmp_path):
    state0, chunk = world
    exploding = der(tmp_path / "s1", state0, optimizer=sgd(1e30))
    refused(exploding, chunk, NonFiniteLossError, r"training loss became (nan|inf) at step \d+ \(task 1\)", task_id=1)


def test_16_a_model_that_does_not_return_logits(refused, tmp_path):
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = MLP()

        def forward(self, x):
            return self.inner(x).sum(dim=1)

    chunk = _chunk(torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,)))
    refused(
        der(tmp_path / "s1", model=Flat()), chunk, DataError, r"logits of shape \(batch, classes\); .* returned \(1,\)"
    )


# ---------------------------------------------------------------- sizes: documented safe behaviour
def test_17_a_one_sample_chunk_trains_and_is_saved(world, tmp_path):
    state0, chunk = world
    updater = der(tmp_path / "s1", state0)
    updater.update(chunk.subset(torch.tensor([3])), task_id=1)
    state = load_state(tmp_path / "s1")
    assert state.manifest["tasks_seen"] == {"0": 64, "1": 1}
    assert state.memory["seen"] == 65 and state.memory["size"] == 50


def test_18_a_memory_larger_than_all_the_data_keeps_every_sample(world, tmp_path):
    _, chunk = world
    der(tmp_path / "s0", memory_size=5000).update(chunk, task_id=0)
    state = load_state(tmp_path / "s0")
    assert state.memory["size"] == 64 and state.memory["storage"]["inputs"].shape[0] == 64
    assert torch.equal(torch.sort(state.memory["storage"]["targets"]).values, torch.sort(chunk.targets).values)
    der(None, tmp_path / "s0", memory_size=5000)  # and it loads back


def test_19_memory_size_zero_trains_without_replay_and_negative_is_refused(world, tmp_path):
    _, chunk = world
    updater = ExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=0, batch_size=32, **QUIET, output_state_folder=tmp_path / "s0"
    )
    updater.update(chunk, task_id=0)
    state = load_state(tmp_path / "s0")
    assert state.memory["size"] == 0 and state.memory["seen"] == 64 and state.manifest["memory"]["keys"] == []
    with pytest.raises(ValueError, match="memory_size must be an int >= 0, got -1"):
        der(memory_size=-1)


# ---------------------------------------------------------------- task ids
@pytest.mark.parametrize("task_id", [-1, True, "", "  ", 1.5])
def test_20_invalid_task_id(world, refused, tmp_path, task_id):
    # strings name tasks (Renate's form, e.g. "default_task"); an empty one names nothing
    state0, chunk = world
    refused(
        der(tmp_path / "s1", state0),
        chunk,
        DataError,
        "task_id must be a non-empty string or an int >= 0",
        task_id=task_id,
    )


def test_21_task_id_contradicting_the_samples(world, refused, tmp_path):
    state0, chunk = world
    tagged = _chunk(chunk.inputs, chunk.targets, torch.full_like(chunk.targets, 2))
    refused(
        der(tmp_path / "s1", state0),
        tagged,
        DataError,
        "task_id=1 was passed but every training sample carries task id 2",
        task_id=1,
    )


def test_22_negative_task_ids_in_the_samples(world, refused, tmp_path):
    state0, chunk = world
    tagged = _chunk(chunk.inputs, chunk.targets, torch.full_like(chunk.targets, -3))
    refused(der(tmp_path / "s1", state0), tagged, DataError, "task ids must be >= 0, got -3")


# ---------------------------------------------------------------- state that does not fit
def test_23_a_model_that_differs_from_the_state_is_refused_and_left_untouched(world):
    state0, _ = world
    model = MLP(hidden=(50,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(StateError, match="does not fit the model passed in"):
        der(None, state0, model=model)
    with pytest.raises(StateError, match="does not fit the model passed in"):
        load_model(model, state0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_24_a_memory_size_that_differs_from_the_state(world):
    state0, _ = world
    model = MLP()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(StateError, match="capacity 50 but this updater was built with memory_size=80"):
        der(None, state0, memory_size=80, model=model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights put back


def test_25_a_state_written_by_another_updater(world):
    state0, _ = world
    with pytest.raises(
        StateError,
        match=r"holds components \['LogitMSE', 'MemoryCrossEntropy'\] but the learner has \['MemoryCrossEntropy'\]",
    ):
        ExperienceReplayModelUpdater(
            MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=50, input_state_folder=state0, **QUIET
        )


# ---------------------------------------------------------------- folders
def test_26_input_folder_missing_or_a_file(tmp_path):
    with pytest.raises(StateError, match="does not exist or is not a folder"):
        der(None, tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="does not exist or is not a folder"):
        der(None, tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StateError, match="manifest.json is missing"):
        der(None, tmp_path / "empty")


def _as_unprivileged(body) -> int:
    """Run ``body`` where permissions bite: as root, in a forked child switched to user nobody."""
    if os.getuid() != 0:
        return 0 if body() else 1
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = 0 if body() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("what", ["folder", "manifest", "model.pt"])
def test_27_an_unreadable_input_folder(world, what):
    state0, _ = world
    root = Path(tempfile.mkdtemp())
    try:
        root.chmod(0o755)
        folder = root / "s0"
        shutil.copytree(state0, folder)
        folder.chmod(0o755)
        for f in folder.iterdir():
            f.chmod(0o644)
        victim = {"folder": folder, "manifest": folder / "manifest.json", "model.pt": folder / "model.pt"}[what]
        victim.chmod(0)

        def refused_clearly() -> bool:
            try:
                load_state(folder)
            except StateError as error:
                return "Permission denied" in str(error) and "cannot be read" in str(error)
            return False

        assert _as_unprivileged(refused_clearly) == 0
    finally:
        shutil.rmtree(root)


def test_28_output_that_exists_or_is_the_input(world, tmp_path):
    state0, _ = world
    (tmp_path / "taken").mkdir()
    with pytest.raises(StateError, match="already exists; a state folder is never overwritten"):
        der(tmp_path / "taken", state0)
    assert der(state0, state0).in_place  # the input folder itself: an in-place update (Renate's pipelines)
    with pytest.raises(StateError, match="does not exist"):  # a missing input stays an error, in place too
        der(tmp_path / "typo", tmp_path / "typo")


def test_29_output_that_cannot_be_written_fails_before_training(world, refused, tmp_path):
    state0, chunk = world
    (tmp_path / "a_file").write_text("not a folder")
    updater = der(tmp_path / "a_file" / "s1", state0)
    refused(updater, chunk, StateError, "cannot create the folder")


def test_30_an_io_error_while_flushing_the_state(world, refused, tmp_path, monkeypatch):
    """A disk that fails (EIO on fsync); a disk filling up mid-write is in test_state_safety.py."""
    state0, chunk = world

    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    refused(
        der(tmp_path / "s1", state0),
        chunk,
        StateError,
        r"writing the state to .* failed \(\[Errno 5\] Input/output error\)",
    )


def test_31_empty_validation_chunk(world, refused, tmp_path):
    state0, chunk = world
    empty = _chunk(chunk.inputs[:0], chunk.targets[:0])
    updater = der(tmp_path / "s1", state0)
    before = snapshot(updater)
    with pytest.raises(DataError, match="validation dataset is empty"):
        updater.update(chunk, val_dataset=empty)
    assert same_snapshot(snapshot(updater), before) and not (tmp_path / "s1").exists()


@pytest.mark.parametrize(
    "settings, match",
    [
        (dict(batch_size=0), "batch_size must be an int >= 1"),
        (dict(batch_memory_frac=1.0), r"batch_memory_frac must lie in \[0, 1\)"),
        (dict(max_epochs=0), "max_epochs must be an int >= 1"),
        (dict(ema_memory_update_gamma=1.5), r"ema_memory_update_gamma must lie in \[0, 1\]"),
    ],
)
def test_32_invalid_training_settings(settings, match):
    with pytest.raises(ValueError, match=match):
        der(**settings)


def test_33_numpy_labels_and_int32_labels_are_accepted(world, tmp_path):
    """Documented: labels may be any integer dtype (e.g. int32 from a numpy pipeline); they become int64."""
    state0, chunk = world
    der(tmp_path / "s1", state0).update(_chunk(chunk.inputs, chunk.targets.to(torch.int32)), task_id=1)
    assert load_state(tmp_path / "s1").memory["storage"]["targets"].dtype == torch.int64
