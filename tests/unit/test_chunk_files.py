"""Chunk files (.npz, .pt, .csv, folders): the documented format, its dtype rules, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retentive.data import TensorChunk, split_mnist
from retentive.data.export import export_split_mnist
from retentive.data.files import read_chunk, write_chunk
from retentive.errors import DataError


def chunk(n=6, shape=(2, 3), dtype=torch.float32, task_ids=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        inputs = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    elif dtype.is_floating_point:
        inputs = torch.rand((n, *shape), generator=g, dtype=dtype)
    else:
        inputs = torch.randint(0, 1000, (n, *shape), generator=g, dtype=dtype)
    targets = torch.randint(0, 10, (n,), generator=g)
    return TensorChunk(inputs, targets, torch.arange(n) % 2 if task_ids else None)


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
@pytest.mark.parametrize("task_ids", [False, True])
def test_tensor_formats_round_trip(tmp_path, suffix, task_ids):
    original = chunk(task_ids=task_ids)
    read = read_chunk(write_chunk(tmp_path / f"c{suffix}", original))
    assert torch.equal(read.inputs, original.inputs) and read.inputs.dtype == torch.float32
    assert torch.equal(read.targets, original.targets) and read.targets.dtype == torch.int64
    assert (read.task_ids is None) == (not task_ids)
    if task_ids:
        assert torch.equal(read.task_ids, original.task_ids)


def test_dtype_rules(tmp_path):
    images = chunk(dtype=torch.uint8)
    read = read_chunk(write_chunk(tmp_path / "images.npz", images))
    assert read.inputs.dtype == torch.float32
    assert torch.equal(read.inputs, images.inputs.float() / 255)  # uint8 is an image: scaled to [0, 1]
    tokens = chunk(dtype=torch.int32)
    read = read_chunk(write_chunk(tmp_path / "tokens.pt", tokens))
    assert read.inputs.dtype == torch.int64 and torch.equal(read.inputs, tokens.inputs.long())
    doubles = chunk(dtype=torch.float64)
    assert read_chunk(write_chunk(tmp_path / "doubles.npz", doubles)).inputs.dtype == torch.float32


def test_csv_columns_convention(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("age,target,income,task_id\n31,1,2.5,0\n45,0,-1e3,2\n")
    read = read_chunk(path)
    assert torch.equal(read.inputs, torch.tensor([[31.0, 2.5], [45.0, -1000.0]]))  # features in file order
    assert read.targets.tolist() == [1, 0] and read.task_ids.tolist() == [0, 2]
    original = chunk(shape=(4,))
    read = read_chunk(write_chunk(tmp_path / "written.csv", original))
    assert torch.equal(read.inputs, original.inputs) and torch.equal(read.targets, original.targets)


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b\n1,2\n", r"no 'target' column"),
        ("a,target\n1,2\n3\n", r"line 3: 1 fields; the header has 2"),
        ("a,target\nx,2\n", r"line 2, column 'a': 'x' is not a number"),
        ("a,target\n1,2.5\n", r"line 2, column 'target': '2.5' is not an integer"),
        ("a,target\n1,-1\n", r"targets hold -1; expected values >= 0"),
        ("target\n1\n", r"no feature columns"),
        ("", r"empty"),
    ],
)
def test_csv_errors_name_file_line_and_column(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        read_chunk(path)
    assert str(path) in str(caught.value)


def test_tensor_file_errors(tmp_path):
    np.savez(tmp_path / "float_targets.npz", inputs=np.zeros((3, 2)), targets=np.zeros(3))
    np.savez(tmp_path / "extra.npz", inputs=np.zeros((3, 2)), targets=np.zeros(3, int), weights=np.ones(3))
    np.savez(tmp_path / "short.npz", inputs=np.zeros((3, 2)), targets=np.zeros(2, int))
    np.savez(tmp_path / "no_targets.npz", inputs=np.zeros((3, 2)))
    np.savez(tmp_path / "objects.npz", inputs=np.array([{"a": 1}] * 3, dtype=object), targets=np.zeros(3, int))
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a zip")
    expected = {
        "float_targets.npz": "targets are torch.float64; expected integer class indices",
        "extra.npz": r"unexpected keys \['weights'\]",
        "short.npz": r"targets have shape \(2,\); expected \(3,\)",
        "no_targets.npz": "the key 'targets' is missing",
        "objects.npz": "not a readable .npz of numeric arrays",
        "list.pt": "holds a list; expected a dict of tensors",
        "garbage.pt": "could not be read safely",
    }
    for name, message in expected.items():
        with pytest.raises(DataError, match=message) as caught:
            read_chunk(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value)
    with pytest.raises(DataError, match="no such file or folder"):
        read_chunk(tmp_path / "missing.npz")
    with pytest.raises(DataError, match=r"unknown chunk format '\.npy'"):
        (tmp_path / "x.npy").write_bytes(b"")
        read_chunk(tmp_path / "x.npy")


class Payload:
    """A pickled object: reading it with weights_only=False would run its __reduce__."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_pt_never_runs_code(tmp_path, capsys):
    torch.save(
        {"inputs": torch.zeros(2, 1), "targets": torch.zeros(2, dtype=torch.long), "x": Payload()}, tmp_path / "evil.pt"
    )
    with pytest.raises(DataError, match="could not be read safely"):
        read_chunk(tmp_path / "evil.pt")
    assert "code ran" not in capsys.readouterr().out


def test_folder_concatenates_files_in_name_order(tmp_path):
    parts = [chunk(n=3, seed=s) for s in range(3)]
    for index, part in enumerate(parts):
        write_chunk(tmp_path / "day" / f"part_{index}{('.npz', '.pt', '.npz')[index]}", part)
    (tmp_path / "day" / ".DS_Store").write_text("hidden files are skipped")
    read = read_chunk(tmp_path / "day")
    assert torch.equal(read.inputs, torch.cat([p.inputs for p in parts]))
    assert torch.equal(read.targets, torch.cat([p.targets for p in parts]))
    (tmp_path / "day" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds \['notes.txt'\], which are not chunk files"):
        read_chunk(tmp_path / "day")
    write_chunk(tmp_path / "mixed" / "a.npz", chunk(shape=(2, 3)))
    write_chunk(tmp_path / "mixed" / "b.npz", chunk(shape=(3, 3)))
    with pytest.raises(DataError, match=r"file 1 has inputs of shape \(3, 3\)"):
        read_chunk(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no data files"):
        read_chunk(tmp_path / "empty")


@pytest.mark.slow
def test_exported_split_mnist_reads_back_as_load_mnist_gives_it(tmp_path, mnist_test):
    written = export_split_mnist(tmp_path, limit=50)
    assert [p.name for p in written["train"]] == [f"chunk_{i}.npz" for i in range(5)]
    expected = split_mnist(mnist_test)
    for index, path in enumerate(written["test"]):
        read = read_chunk(path)
        assert len(read) == 50 and set(read.targets.tolist()) <= {2 * index, 2 * index + 1}
        # every exported sample is the same image, scaled the same way, as load_mnist's
        reference = expected[index]
        rows = (reference.inputs.flatten(1)[:, None, :] == read.inputs.flatten(1)[None]).all(-1)
        found = rows.any(0)
        assert bool(found.all())
        assert torch.equal(reference.targets[rows.float().argmax(0)], read.targets)
