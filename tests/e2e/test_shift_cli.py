"""``retentive shift`` and :func:`detect_shift` on a real state folder (DER++ on MNIST):
exit 0 / 3, the result printed, as JSON and in TensorBoard; bad input is one error, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import QUIET, sgd

from retentive import DarkExperienceReplayModelUpdater, detect_shift, load_model
from retentive.cli import main
from retentive.data.files import write_chunk
from retentive.data.rotations import rotate
from retentive.data.tensors import TensorChunk
from retentive.models import MLP

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "der.yaml"


def _digits(mnist, classes, start, n):
    index = torch.nonzero(torch.isin(mnist.targets, torch.tensor(classes))).flatten()[start : start + n]
    return mnist.subset(index)


@pytest.fixture(scope="module")
def pipeline(mnist_train, tmp_path_factory):
    root = tmp_path_factory.mktemp("shift")
    torch.manual_seed(0)
    updater = DarkExperienceReplayModelUpdater(
        MLP(),
        torch.nn.CrossEntropyLoss(),
        sgd(0.1),
        memory_size=300,
        batch_size=32,
        output_state_folder=root / "state",
        seed=0,
        **QUIET,
    )
    updater.update(_digits(mnist_train, [0, 1, 2], 0, 600))
    same, other = _digits(mnist_train, [0, 1, 2], 600, 300), _digits(mnist_train, [0, 1, 2], 900, 300)
    write_chunk(root / "same.npz", same)
    write_chunk(root / "rotated.npz", TensorChunk(rotate(other.inputs, 90.0), other.targets))
    write_chunk(root / "new_classes.npz", _digits(mnist_train, [7, 8, 9], 0, 300))
    write_chunk(root / "wide.npz", TensorChunk(torch.rand(50, 1, 30, 30), torch.zeros(50, dtype=torch.long)))
    write_chunk(root / "one.npz", TensorChunk(same.inputs[:1], same.targets[:1]))
    return root


def _run(root: Path, *extra: str) -> int:
    return main(["shift", "--state", str(root / "state"), "--config", str(CONFIG), "--num-permutations", "200", *extra])


def test_no_shift_exits_0_and_a_rotated_chunk_exits_3_with_json_and_tensorboard(pipeline, tmp_path, capsys):
    assert _run(pipeline, "--data", str(pipeline / "same.npz"), "--no-tensorboard") == 0
    assert "mmd: no shift detected at alpha 0.05" in capsys.readouterr().out
    out, tb = tmp_path / "out" / "shift.json", tmp_path / "tb"
    assert _run(pipeline, "--data", str(pipeline / "rotated.npz"), "--json", str(out), "--tb-logs", str(tb)) == 3
    assert "mmd: shift detected" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["shift"] and record["p_value"] == 1 / 201 and record["score"] == 1 - 1 / 201
    assert record["features"] == "layer 'classifier' (penultimate)" and record["n_reference"] == 300
    assert list(tb.glob("shift/version_0/events.out.tfevents.*"))
    # the Python API gives the same result from the same state folder
    model = load_model(MLP(), pipeline / "state")
    result = detect_shift(
        record_chunk(pipeline / "rotated.npz"),
        state_folder=pipeline / "state",
        model=model,
        num_permutations=200,
        batch_size=256,
    )
    assert (result.p_value, result.statistic) == (record["p_value"], record["statistic"])


def record_chunk(path: Path) -> TensorChunk:
    from retentive.data.files import read_chunk

    return read_chunk(path)


def test_ks_on_raw_inputs_and_the_label_test_on_new_classes(pipeline, capsys):
    base = ["shift", "--state", str(pipeline / "state"), "--no-tensorboard"]
    assert main([*base, "--data", str(pipeline / "rotated.npz"), "--detector", "ks"]) == 3
    assert main([*base, "--data", str(pipeline / "same.npz"), "--detector", "labels"]) == 0
    assert main([*base, "--data", str(pipeline / "new_classes.npz"), "--detector", "labels"]) == 3
    assert (
        main(
            [
                *base,
                "--data",
                str(pipeline / "new_classes.npz"),
                "--detector",
                "labels",
                "--predicted",
                "--config",
                str(CONFIG),
            ]
        )
        == 3
    )
    out = capsys.readouterr().out
    assert "ks: shift detected" in out and "predicted-labels: shift detected" in out


def test_bad_input_is_one_error_and_nothing_is_written(pipeline, tmp_path, capsys):
    out, tb = tmp_path / "out" / "shift.json", tmp_path / "tb"
    written = ["--json", str(out), "--tb-logs", str(tb)]
    assert _run(pipeline, "--data", str(pipeline / "wide.npz"), *written) == 1
    assert (
        "wide.npz: inputs of shape (1, 30, 30) and dtype torch.float32 do not fit the model MLP"
        in capsys.readouterr().err
    )
    assert _run(pipeline, "--data", str(pipeline / "one.npz"), *written) == 1
    assert "one.npz: the mmd test needs at least 2 query samples, got 1" in capsys.readouterr().err
    torch.manual_seed(0)
    empty = DarkExperienceReplayModelUpdater(
        MLP(),
        torch.nn.CrossEntropyLoss(),
        sgd(0.1),
        memory_size=0,
        batch_size=32,
        output_state_folder=tmp_path / "empty",
        seed=0,
        **QUIET,
    )
    empty.update(record_chunk(pipeline / "one.npz"))
    assert main(["shift", "--state", str(tmp_path / "empty"), "--data", str(pipeline / "same.npz"), *written]) == 1
    assert "the replay memory of" in capsys.readouterr().err
    assert not out.parent.exists() and not tb.exists()
