"""Clear errors: a label out of range (in the memory or a dataset), a precision Lightning refuses or a
closed output pipe is one line naming the value and what was expected, raised before anything is written; never a raw ``IndexError``, a misleading
"loss became nan" mid-update, a wrong count, or a long traceback (a ``BrokenPipeError`` included)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import QUIET, sgd
from s3_server import s3  # noqa: F401 - the fixture
from state_helpers import der, hidden_entries, rehash, same_snapshot, snapshot, tree_digest
from torch.utils.data import Dataset, TensorDataset

from retentive import DataError, ExperienceReplayModelUpdater, StateError
from retentive.cli import main
from retentive.cli.config import ConfigError, load_config
from retentive.data import TensorChunk
from retentive.data.files import write_chunk
from retentive.models import MLP
from retentive.state.remote import publish_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ER = ROOT / "configs" / "er.yaml"
CLI = ["--set", "logger=false", "--threads", "1"]


class Plain(Dataset):
    """A dataset that hides its tensors: only its first sample is checked before training."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.inputs, self.targets_hidden = inputs, targets

    def __len__(self) -> int:
        return len(self.targets_hidden)

    def __getitem__(self, index: int):
        return self.inputs[index], int(self.targets_hidden[index])


@pytest.fixture(scope="module")
def world(split_small, tmp_path_factory):
    """A DER state folder (50 memory samples, 10 classes) and a 1,000-sample chunk."""
    train, _ = split_small
    root = tmp_path_factory.mktemp("clear")
    der(root / "s0").update(train[0].subset(torch.arange(64)), task_id=0)
    return root / "s0", train[1]


def _er(output: Path | None, **kwargs) -> ExperienceReplayModelUpdater:
    torch.manual_seed(0)
    model = kwargs.pop("model", None) or MLP()
    return ExperienceReplayModelUpdater(
        model,
        torch.nn.CrossEntropyLoss(),
        sgd(),
        memory_size=100,
        batch_size=32,
        output_state_folder=output,
        **QUIET,
        **kwargs,
    )


def _refused(updater, dataset, match: str) -> DataError:
    """The update fails with a DataError matching ``match``; model, memory, counters as before; nothing written."""
    before = snapshot(updater)
    with pytest.raises(DataError, match=match) as caught:
        updater.update(dataset)
    assert same_snapshot(snapshot(updater), before)
    assert not updater.output_state_folder.exists() and hidden_entries(updater.output_state_folder.parent) == []
    return caught.value


def _with_memory_label(source: Path, target: Path, label: int, slot: int = 3) -> Path:
    """A copy of ``source`` whose memory holds ``label`` in ``slot``, the manifest re-hashed to vouch for it."""
    shutil.copytree(source, target)
    memory = torch.load(target / "memory.pt", weights_only=True)
    memory["storage"]["targets"][slot] = label
    torch.save(memory, target / "memory.pt")
    rehash(target)
    return target


# ------------------------------------------------------------------ 10. memory labels out of range
@pytest.mark.parametrize("label", [1000, -100, 10])
def test_10_memory_labels_out_of_range_are_refused_when_the_updater_is_built(world, tmp_path, label):
    state0, chunk = world
    folder = _with_memory_label(state0, tmp_path / "bad", label)
    digest = tree_digest(folder)
    model = MLP()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    expected = (
        rf"the memory in '{re.escape(str(folder))}' holds 1 of 50 labels outside the model's 10 outputs "
        rf"\(expected 0..9\): {label} \(first in slot 3\)"
    )
    with pytest.raises(StateError, match=expected):
        der(tmp_path / "out", folder, model=model)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # put back, as for a model mismatch
    with pytest.raises(StateError, match=expected):  # in place: refused before anything is swapped
        der(folder, folder)
    assert not (tmp_path / "out").exists() and tree_digest(folder) == digest
    assert hidden_entries(tmp_path) == []
    der(tmp_path / "fine", state0).update(chunk.subset(torch.arange(32)), task_id=1)  # the intact state still loads


def test_10_a_bad_memory_label_at_a_url_names_the_url(s3, world, tmp_path):  # noqa: F811 - the fixture
    state0, _ = world
    url = f"s3://{s3.bucket}/bad-labels"
    publish_state(_with_memory_label(state0, tmp_path / "bad", 1000), url)
    with pytest.raises(
        StateError, match=rf"^the memory in '{re.escape(url)}' holds 1 of 50 labels outside the model's 10 outputs"
    ):
        der(tmp_path / "out", url)
    assert not (tmp_path / "out").exists()


def test_10_the_cli_reports_a_bad_memory_label_in_one_line(world, tmp_path, capsys):
    state0, chunk = world
    data = tmp_path / "chunk.npz"
    write_chunk(data, chunk.subset(torch.arange(96)))
    assert main(["update", "--config", str(ER), "--data", str(data), "--output-state", str(tmp_path / "s0"), *CLI]) == 0
    capsys.readouterr()
    folder = _with_memory_label(tmp_path / "s0", tmp_path / "bad", 1000, slot=0)
    out = tmp_path / "new" / "s1"
    assert (
        main(
            [
                "update",
                "--config",
                str(ER),
                "--data",
                str(data),
                "--input-state",
                str(folder),
                "--output-state",
                str(out),
                *CLI,
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "holds 1 of 96 labels outside the model's 10 outputs (expected 0..9): 1000 (first in slot 0)" in err
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------ 11. labels the chunk's checks missed
def test_11_a_tensor_dataset_label_out_of_range_is_refused_before_training(world, tmp_path):
    _, chunk = world
    targets = chunk.targets.clone()
    targets[500] = 10
    updater = _er(tmp_path / "s1")
    _refused(
        updater,
        TensorDataset(chunk.inputs, targets),
        r"^training label 10 \(sample 500\) is outside the model's 10 outputs \(expected 0..9\); "
        r"1 of 1000 labels is outside 0..9 \(10\)$",
    )
    assert updater.learner.total_steps == 0  # refused before the first step


def test_11_a_dataset_hiding_its_labels_is_refused_at_the_step_not_with_an_index_error(world, tmp_path):
    """The bad label enters the memory at its step and is replayed before the step's verdict is
    read: the replayed labels are clamped until then, so the verdict is the DataError."""
    _, chunk = world
    targets = chunk.targets.clone()
    targets[500] = 10
    _refused(
        _er(tmp_path / "s1"),
        Plain(chunk.inputs, targets),
        r"^label 10 is outside the model's 10 outputs \(expected 0..9\), at step \d+ \(task 0\)$",
    )


def test_11_an_in_place_update_with_a_bad_label_leaves_the_folder_untouched(world, tmp_path):
    state0, chunk = world
    folder = tmp_path / "s"
    shutil.copytree(state0, folder)
    digest = tree_digest(folder)
    targets = chunk.targets.clone()
    targets[500] = 10
    for dataset in (TensorDataset(chunk.inputs, targets), Plain(chunk.inputs, targets)):
        with pytest.raises(DataError, match=r"label 10 .*is outside the model's 10 outputs \(expected 0..9\)"):
            der(folder, folder).update(dataset, task_id=1)
        assert tree_digest(folder) == digest and hidden_entries(tmp_path) == []


@pytest.fixture(scope="module")
def digits_5_to_9(mnist_train):
    index = (mnist_train.targets >= 5).nonzero()[:1000, 0]
    return mnist_train.inputs[index], mnist_train.targets[index]


@pytest.mark.parametrize("form", [TensorDataset, TensorChunk])
def test_11_every_label_out_of_range_is_counted_and_listed(digits_5_to_9, tmp_path, form):
    inputs, targets = digits_5_to_9
    error = _refused(
        _er(tmp_path / "s1", model=MLP(num_classes=5)),
        form(inputs, targets),
        r"is outside the model's 5 outputs \(expected 0..4\); 1000 of 1000 labels are outside 0..4 "
        r"\(5, 6, 7, 8, 9\)$",
    )
    assert str(error).startswith(f"training label {int(targets[0])} (sample 0)")


def test_11_a_dataset_hiding_its_labels_claims_no_count(digits_5_to_9, tmp_path):
    inputs, targets = digits_5_to_9
    _refused(
        _er(tmp_path / "s1", model=MLP(num_classes=5)),
        Plain(inputs, targets),
        rf"^training label {int(targets[0])} \(sample 0\) is outside the model's 5 outputs \(expected 0..4\)$",
    )


# ------------------------------------------------------------------ 12. precision, and a closed pipe
@pytest.fixture(scope="module")
def chunk_file(world, tmp_path_factory):
    _, chunk = world
    path = tmp_path_factory.mktemp("chunkfile") / "train.npz"
    write_chunk(path, chunk.subset(torch.arange(64)))
    return path


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"retentive {command}: error: "), err
    return lines[0]


def test_12_a_precision_lightning_refuses_is_one_line_naming_key_value_and_choices(chunk_file, tmp_path, capsys):
    config = tmp_path / "p7.yaml"
    config.write_text(ER.read_text().replace('precision: "32"', 'precision: "7"'))
    out = tmp_path / "new" / "s0"
    assert main(["update", "--config", str(config), "--data", str(chunk_file), "--output-state", str(out), *CLI]) == 1
    line = _one_line(capsys, "update")
    assert f"{config}: trainer.precision: expected a precision Lightning accepts ('transformer-engine'" in line
    assert "'bf16-mixed', '32-true'" in line and "64, 32, 16, '64', '32', '16', 'bf16'), got str '7'" in line
    assert not (tmp_path / "new").exists()
    # from --set, YAML makes 7 an int; a near miss gets a suggestion
    assert (
        main(
            [
                "update",
                "--config",
                str(ER),
                "--data",
                str(chunk_file),
                "--output-state",
                str(out),
                *CLI,
                "--set",
                "trainer.precision=bf16_mixed",
            ]
        )
        == 1
    )
    line = _one_line(capsys, "update")
    assert f"{ER} (with --set trainer.precision): trainer.precision:" in line
    assert line.endswith("got str 'bf16_mixed' (did you mean 'bf16-mixed'?)")
    with pytest.raises(ConfigError, match=r"trainer.precision: expected a precision Lightning accepts .*got int 7$"):
        load_config(ER, ["trainer.precision=7"])
    assert not (tmp_path / "new").exists()
    # in place: the folder is untouched
    assert main(["update", "--config", str(ER), "--data", str(chunk_file), "--output-state", str(out), *CLI]) == 0
    capsys.readouterr()
    digest = tree_digest(out)
    assert (
        main(
            [
                "update",
                "--config",
                str(config),
                "--data",
                str(chunk_file),
                "--input-state",
                str(out),
                "--output-state",
                str(out),
                *CLI,
            ]
        )
        == 1
    )
    assert "trainer.precision: expected a precision Lightning accepts" in _one_line(capsys, "update")
    assert tree_digest(out) == digest and hidden_entries(out.parent) == []


def _set_precision(value: str | int) -> str:
    return f"trainer.precision='{value}'" if isinstance(value, str) else f"trainer.precision={value}"


@pytest.mark.filterwarnings("ignore:.*supported for historical reasons")
def test_12_the_precisions_accepted_are_exactly_lightnings():
    from lightning_fabric.connector import _convert_precision_to_unified_args

    from retentive.cli.config.checking import lightning_precisions

    accepted = lightning_precisions()
    assert {"32", 32, "16-mixed", "bf16-mixed", "64-true"} <= set(accepted)
    for value in accepted:
        _convert_precision_to_unified_args(value)  # Lightning takes every value the check lets through
        assert load_config(ER, [_set_precision(value)]).trainer["precision"] == value
    for value in ("7", 8, "fp16", "16_mixed"):
        with pytest.raises(ValueError, match="is invalid"):
            _convert_precision_to_unified_args(value)
        with pytest.raises(ConfigError, match="expected a precision Lightning accepts"):
            load_config(ER, [_set_precision(value)])


def _shell(command: str, tmp_path: Path) -> tuple[str, str, int]:
    """Run ``command`` in bash without pipefail; stdout, stderr and the first command's exit code."""
    code = tmp_path / "code"
    result = subprocess.run(
        ["bash", "-c", f"set +o pipefail; {command}; echo ${{PIPESTATUS[0]}} > {code}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout, result.stderr, int(code.read_text())


def test_12_output_to_a_closed_pipe_exits_quietly(world, tmp_path):
    state0, _ = world
    inspect = f"{sys.executable} -m retentive.cli inspect {state0}"
    out, err, code = _shell(f"{inspect} | true", tmp_path)  # the reader is gone before anything is written
    assert (err, code) == ("", 141), err
    out, err, code = _shell(f"{inspect} | head -1", tmp_path)
    assert err == "" and code in (0, 141), err
    assert out == f"state folder    {state0}\n"


def test_12_a_broken_pipe_that_is_not_stdout_is_not_hidden(world, tmp_path):
    state0, _ = world
    script = (
        "import sys, retentive.cli.inspect as command\n"
        "def run(args):\n    raise BrokenPipeError(32, 'Broken pipe')\n"
        "command.run = run\n"
        "from retentive.cli import main\nsys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "inspect", str(state0)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and "BrokenPipeError" in result.stderr and "Traceback" in result.stderr
