"""The MNIST reader: real files, the search path, and fetching into a cache from a local server."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from first_run_support import serve
from reader_support import search_nowhere

from retentive.data import MNISTNotFoundError, load_mnist, load_mnist_arrays, split_mnist
from retentive.data.mnist import FILES, ensure_mnist, locate_mnist, mirrors, parse_idx, search_dirs


@pytest.fixture(scope="module")
def source() -> Path:
    """The folder the library reads MNIST from (found, or fetched, exactly as the commands do)."""
    ensure_mnist()
    folder = locate_mnist()
    assert folder is not None
    return folder


def _file(folder: Path, name: str) -> bytes:
    """The uncompressed bytes of ``name`` in ``folder`` (the search path may hold .gz or plain files)."""
    gz = folder / f"{name}.gz"
    return gzip.decompress(gz.read_bytes()) if gz.is_file() else (folder / name).read_bytes()


def _mirror_of(source: Path, target: Path) -> Path:
    """A mirror's layout (every file gzipped) built from ``source``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (target / f"{name}.gz").write_bytes(gzip.compress(_file(source, name), compresslevel=1))
    return target


def test_real_mnist_shapes_and_label_counts(mnist_train, mnist_test):
    assert mnist_train.inputs.shape == (60000, 1, 28, 28) and mnist_test.inputs.shape == (10000, 1, 28, 28)
    assert (
        mnist_train.inputs.dtype == torch.float32
        and float(mnist_train.inputs.min()) >= 0.0
        and float(mnist_train.inputs.max()) == 1.0
    )
    assert torch.bincount(mnist_test.targets).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_split_mnist_chunks(mnist_test):
    chunks = split_mnist(mnist_test)
    assert [sorted(c.targets.unique().tolist()) for c in chunks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert sum(len(c) for c in chunks) == 10000


def test_parse_idx_rejects_bad_files():
    with pytest.raises(ValueError, match="too short"):
        parse_idx(b"\x00")
    with pytest.raises(ValueError, match="not an unsigned-byte idx"):
        parse_idx(b"\x00\x00\x0d\x01" + b"\x00\x00\x00\x01" + b"\x00" * 4)
    with pytest.raises(ValueError, match="promises"):
        parse_idx(b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"\x00" * 3)
    assert parse_idx(b"\x00\x00\x08\x02" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x02" + b"\x07\x09").tolist() == [[7, 9]]


def test_missing_files_error_lists_every_place_searched(tmp_path, monkeypatch):
    search_nowhere(tmp_path, monkeypatch)
    with pytest.raises(MNISTNotFoundError) as error:
        load_mnist("test", root=tmp_path / "nowhere")
    message = str(error.value)
    for folder in (tmp_path / "nowhere", tmp_path / "data" / "mnist", tmp_path / "cache" / "mnist"):
        assert str(folder) in message
    assert "download=True" in message


def test_root_argument_and_environment_override(tmp_path, monkeypatch, source):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / "env" / "mnist").mkdir(parents=True, exist_ok=True)
        (tmp_path / "env" / "mnist" / name).write_bytes(_file(source, name))
    monkeypatch.setenv("RETENTIVE_DATA", str(tmp_path / "env"))
    # the folder itself (what --data takes), then its mnist/ child (what earlier versions wanted)
    assert search_dirs()[:2] == [tmp_path / "env", tmp_path / "env" / "mnist"]
    images, labels = load_mnist_arrays("test")  # plain (not gzipped) files from the environment folder
    assert images.shape == (10000, 28, 28) and labels[:3].tolist() == [7, 2, 1]


def test_retentive_data_takes_the_folder_data_takes(tmp_path, monkeypatch, source):
    """Finding 8 of issue 16: RETENTIVE_DATA wanted the parent of the folder --data wants."""
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(_file(source, name))
    _isolate(tmp_path / "elsewhere", monkeypatch, keep_search=True)
    monkeypatch.setenv("RETENTIVE_DATA", str(tmp_path))
    assert load_mnist_arrays("test")[1][:3].tolist() == [7, 2, 1]
    assert load_mnist_arrays("test", root=tmp_path)[1][:3].tolist() == [7, 2, 1]  # the same folder as --data


def _isolate(tmp_path, monkeypatch, keep_search=False):
    monkeypatch.setenv("RETENTIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RETENTIVE_DATA", raising=False)
    monkeypatch.delenv("RETENTIVE_MNIST_MIRROR", raising=False)
    if not keep_search:
        monkeypatch.setattr("retentive.data.mnist.search_dirs", lambda root=None: [tmp_path / "cache" / "mnist"])


@pytest.mark.slow
def test_download_into_cache_from_a_local_server(tmp_path, monkeypatch, source):
    _isolate(tmp_path, monkeypatch)
    with pytest.raises(MNISTNotFoundError):
        load_mnist("test")  # nothing is downloaded unless asked
    with serve(_mirror_of(source, tmp_path / "mirror")) as url:
        data = load_mnist("test", download=True, mirror=url)
    assert len(data) == 10000 and data.targets[:3].tolist() == [7, 2, 1]
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert len(load_mnist("test")) == 10000  # now found in the cache, no server needed


@pytest.mark.slow
def test_download_refuses_a_file_with_the_wrong_checksum(tmp_path, monkeypatch, source):
    _isolate(tmp_path, monkeypatch)
    mirror = _mirror_of(source, tmp_path / "mirror")
    raw = bytearray(_file(source, "t10k-labels-idx1-ubyte"))
    raw[-1] ^= 1  # one flipped label
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with serve(mirror) as url, pytest.raises(ValueError, match=FILES["t10k-labels-idx1-ubyte"]):
        load_mnist("test", download=True, mirror=url)
    assert not (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    with pytest.raises(MNISTNotFoundError, match="could not download http://127.0.0.1:9/"):
        load_mnist("test", download=True, mirror="http://127.0.0.1:9/")


def test_mirrors_come_from_the_environment_in_order(monkeypatch):
    monkeypatch.setenv("RETENTIVE_MNIST_MIRROR", " http://a.example/x/ ,http://b.example/")
    assert mirrors() == ("http://a.example/x/", "http://b.example/")
    monkeypatch.setenv("RETENTIVE_MNIST_MIRROR", "")
    assert mirrors()[0].startswith("https://")


@pytest.mark.slow
def test_ensure_fetches_what_is_missing_trying_each_mirror_in_order(tmp_path, monkeypatch, source, capsys):
    _isolate(tmp_path, monkeypatch)
    with serve(_mirror_of(source, tmp_path / "mirror")) as url:
        monkeypatch.setenv("RETENTIVE_MNIST_MIRROR", f"http://127.0.0.1:9/,{url}")  # the first is unreachable
        ensure_mnist(splits=("test",))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"from http://127.0.0.1:9/ into {tmp_path / 'cache' / 'mnist'}" in err
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    ensure_mnist(splits=("test",))  # present now: nothing fetched, nothing said
    assert capsys.readouterr().err == ""


def test_ensure_offline_says_what_was_tried_and_leaves_nothing(tmp_path, monkeypatch):
    _isolate(tmp_path, monkeypatch)
    monkeypatch.setenv("RETENTIVE_MNIST_MIRROR", "http://127.0.0.1:9/")
    with pytest.raises(MNISTNotFoundError) as error:
        ensure_mnist()
    message = str(error.value)
    assert "\n" not in message and "http://127.0.0.1:9/" in message
    assert "--data" in message and "RETENTIVE_DATA" in message
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))
