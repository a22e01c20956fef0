"""The MNIST reader: real files, the search path, and fetching into a cache from a local server."""

from __future__ import annotations

import contextlib
import functools
import gzip
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import torch

from retentive.data import MNISTNotFoundError, load_mnist, load_mnist_arrays, split_mnist
from retentive.data.mnist import FILES, parse_idx, search_dirs

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def test_real_mnist_shapes_and_label_counts(mnist_train, mnist_test):
    assert mnist_train.inputs.shape == (60000, 1, 28, 28) and mnist_test.inputs.shape == (10000, 1, 28, 28)
    assert mnist_train.inputs.dtype == torch.float32 and 0.0 <= float(mnist_train.inputs.min()) and float(mnist_train.inputs.max()) == 1.0
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
    monkeypatch.setenv("RETENTIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RETENTIVE_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("retentive.data.mnist.Path.resolve", lambda self: tmp_path / "pkg" / "retentive" / "data" / "mnist.py")
    with pytest.raises(MNISTNotFoundError) as error:
        load_mnist("test", root=tmp_path / "nowhere")
    message = str(error.value)
    for folder in (tmp_path / "nowhere", tmp_path / "data" / "mnist", tmp_path / "cache" / "mnist"):
        assert str(folder) in message
    assert "download=True" in message


def test_root_argument_and_environment_override(tmp_path, monkeypatch):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / "env" / "mnist").mkdir(parents=True, exist_ok=True)
        (tmp_path / "env" / "mnist" / name).write_bytes(gzip.decompress((SHARED / f"{name}.gz").read_bytes()))
    monkeypatch.setenv("RETENTIVE_DATA", str(tmp_path / "env"))
    assert search_dirs()[0] == tmp_path / "env" / "mnist"
    images, labels = load_mnist_arrays("test")  # plain (not gzipped) files from the environment folder
    assert images.shape == (10000, 28, 28) and labels[:3].tolist() == [7, 2, 1]


@contextlib.contextmanager
def _serve(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _isolate(tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RETENTIVE_DATA", raising=False)
    monkeypatch.setattr("retentive.data.mnist.search_dirs", lambda root=None: [tmp_path / "cache" / "mnist"])


def test_download_into_cache_from_a_local_server(tmp_path, monkeypatch):
    _isolate(tmp_path, monkeypatch)
    with pytest.raises(MNISTNotFoundError):
        load_mnist("test")  # nothing is downloaded unless asked
    with _serve(SHARED) as url:
        data = load_mnist("test", download=True, mirror=url)
    assert len(data) == 10000 and data.targets[:3].tolist() == [7, 2, 1]
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert len(load_mnist("test")) == 10000  # now found in the cache, no server needed


def test_download_refuses_a_file_with_the_wrong_checksum(tmp_path, monkeypatch):
    _isolate(tmp_path, monkeypatch)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(SHARED / "t10k-images-idx3-ubyte.gz", mirror)
    raw = bytearray(gzip.decompress((SHARED / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[-1] ^= 1  # one flipped label
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with _serve(mirror) as url, pytest.raises(ValueError, match=FILES["t10k-labels-idx1-ubyte"]):
        load_mnist("test", download=True, mirror=url)
    assert not (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    with pytest.raises(MNISTNotFoundError, match="could not download http://127.0.0.1:9/"):
        load_mnist("test", download=True, mirror="http://127.0.0.1:9/")
