"""The CIFAR-10 reader: the binary format, fetching from a local server, and the image-folder fallback.

The archives served here are built by the test, in CIFAR-10's binary format, from a few hundred
images of the project's shared copy (JPEG re-encoded at quality ~75, so not the canonical pixels);
the reader must return exactly the pixels written into them.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from cifar_support import sample_folders
from first_run_support import closed_port_url, serve
from reader_support import search_nowhere

from retentive.data import CIFAR10NotFoundError, cifar10, image_folder, seq_cifar10
from retentive.data import cifar as cifar_module
from retentive.data.cifar import ARCHIVE, ARCHIVE_MD5, CLASSES, archive_bytes, mirrors, parse_batch
from retentive.errors import DataError


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return sample_folders(tmp_path_factory.mktemp("cifar-sample"))


@pytest.fixture(scope="module")
def archive(sample) -> bytes:
    """A binary archive of the sample: 300 train and 100 test records."""
    return archive_bytes(image_folder(sample / "train", cache=False), image_folder(sample / "test", cache=False))


def _isolate(tmp_path: Path, monkeypatch) -> Path:
    """Nothing on the search path but ``root`` and an empty cache; returns the cache's cifar10 folder."""
    monkeypatch.setenv("RETENTIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RETENTIVE_DATA", raising=False)
    monkeypatch.delenv("RETENTIVE_CIFAR10_MIRROR", raising=False)
    monkeypatch.setattr(
        cifar_module, "search_dirs", lambda root=None: [*([Path(root)] if root else []), tmp_path / "cache" / "cifar10"]
    )
    return tmp_path / "cache" / "cifar10"


def test_binary_archive_round_trip_and_label_order(sample, archive, tmp_path):
    (tmp_path / ARCHIVE).write_bytes(archive)
    train, test = cifar10(tmp_path), cifar10(tmp_path, train=False)
    folder = image_folder(sample / "train", cache=False)
    assert torch.equal(train.images, folder.images) and torch.equal(train.targets, folder.targets)
    assert train.classes == CLASSES and len(test) == 100
    assert test.targets.tolist() == [c for c in range(10) for _ in range(10)]
    image, label = train[30]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and label == 1  # automobile
    chunks = seq_cifar10(test, with_task_ids=True)
    assert [sorted(c.targets.unique().tolist()) for c in chunks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert [c.task_ids.unique().tolist() for c in chunks] == [[0], [1], [2], [3], [4]]


def test_unpacked_batches_folder_is_read(archive, tmp_path):
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    assert len(cifar10(tmp_path)) == 300 and len(cifar10(tmp_path / "cifar-10-batches-bin", train=False)) == 100


def test_a_truncated_archive_is_a_clear_error(archive, tmp_path):
    (tmp_path / ARCHIVE).write_bytes(archive[: len(archive) // 2])
    with pytest.raises(DataError, match=r"cifar-10-binary\.tar\.gz.* is truncated or corrupt"):
        cifar10(tmp_path)


def test_parse_batch_rejects_partial_records_and_bad_labels():
    with pytest.raises(DataError, match="not a whole number of 3073-byte"):
        parse_batch(b"\x00" * 3074, "x.bin")
    with pytest.raises(DataError, match="label 10 is out of range"):
        parse_batch(b"\x0a" + b"\x00" * 3072, "x.bin")
    images, labels = parse_batch(b"\x03" + bytes(range(256)) * 12, "x.bin")
    assert labels.tolist() == [3] and images.shape == (1, 3, 32, 32) and images[0, 0, 0, :3].tolist() == [0, 1, 2]


def test_download_into_cache_from_a_local_server(archive, tmp_path, monkeypatch):
    cache = _isolate(tmp_path, monkeypatch)
    with pytest.raises(CIFAR10NotFoundError, match="download=True"):
        cifar10()  # nothing is downloaded unless asked
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / ARCHIVE).write_bytes(archive)
    monkeypatch.setattr(cifar_module, "ARCHIVE_MD5", hashlib.md5(archive).hexdigest())  # the test's own archive
    with serve(tmp_path / "mirror") as url:
        monkeypatch.setenv("RETENTIVE_CIFAR10_MIRROR", f"{closed_port_url()},{url}")  # the first is unreachable
        data = cifar10(download=True)
    assert len(data) == 300 and sorted(p.name for p in cache.iterdir()) == [ARCHIVE]
    assert len(cifar10(train=False)) == 100  # now found in the cache, no server needed


def test_download_refuses_an_archive_with_the_wrong_md5(archive, tmp_path, monkeypatch):
    cache = _isolate(tmp_path, monkeypatch)
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / ARCHIVE).write_bytes(archive)  # not the canonical archive: its MD5 differs
    with serve(tmp_path / "mirror") as url, pytest.raises(CIFAR10NotFoundError, match=f"expected {ARCHIVE_MD5}"):
        cifar10(download=True, mirror=url)
    assert not cache.exists() or not any(cache.iterdir())
    with pytest.raises(CIFAR10NotFoundError, match=r"could not download http://127\.0\.0\.1:\d+/cifar-10"):
        cifar10(download=True, mirror=closed_port_url())


def test_mirrors_come_from_the_environment_in_order(monkeypatch):
    monkeypatch.setenv("RETENTIVE_CIFAR10_MIRROR", " http://a.example/x/ ,http://b.example/")
    assert mirrors() == ("http://a.example/x/", "http://b.example/")
    monkeypatch.setenv("RETENTIVE_CIFAR10_MIRROR", "")
    assert mirrors()[0].startswith("https://")


def test_image_folder_fallback_and_binary_first(sample, archive, tmp_path, monkeypatch):
    _isolate(tmp_path, monkeypatch)
    shutil.copytree(sample, tmp_path / "root")
    from_folder = cifar10(tmp_path / "root", train=False)
    assert from_folder.classes == CLASSES and len(from_folder) == 100
    cache = tmp_path / "cache" / "cifar10"
    cache.mkdir(parents=True)
    (cache / ARCHIVE).write_bytes(archive)  # the canonical format anywhere on the path comes first
    assert len(cifar10(tmp_path / "root")) == 300
    # the folder that was read holds its decode cache; the one the binary stood in for was never decoded
    assert (tmp_path / "root" / "test" / ".retentive-images.pt").exists()
    assert not (tmp_path / "root" / "train" / ".retentive-images.pt").exists()


def test_an_images_archive_is_unpacked_into_the_cache_not_beside_it(sample, tmp_path, monkeypatch):
    cache = _isolate(tmp_path, monkeypatch)
    (tmp_path / "elsewhere").mkdir()
    with tarfile.open(tmp_path / "elsewhere" / "cifar10-images.tar.gz", "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(sample / split, arcname=split)
    data = cifar10(tmp_path / "elsewhere", train=False)
    assert len(data) == 100 and torch.equal(data.images, image_folder(sample / "test", cache=False).images)
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["cifar10-images.tar.gz"]
    assert [p.name.startswith("images-") for p in cache.iterdir()] == [True]


def test_wrong_class_folders_are_a_clear_error(sample, tmp_path, monkeypatch):
    _isolate(tmp_path, monkeypatch)
    shutil.copytree(sample / "test", tmp_path / "root" / "test")
    (tmp_path / "root" / "test" / "truck").rename(tmp_path / "root" / "test" / "lorry")
    with pytest.raises(DataError, match="CIFAR-10's are"):
        cifar10(tmp_path / "root", train=False)


def test_missing_data_error_lists_every_place_searched(tmp_path, monkeypatch):
    search_nowhere(tmp_path, monkeypatch)
    with pytest.raises(CIFAR10NotFoundError) as error:
        cifar10(tmp_path / "nowhere", train=False)
    for folder in (tmp_path / "nowhere", tmp_path / "data" / "cifar10", tmp_path / "cache" / "cifar10"):
        assert str(folder) in str(error.value)


@pytest.mark.slow
def test_the_shared_copy_reads_whole():
    """All 10,000 test images of the shared copy (JPEG re-encoded, quality ~75), 1,000 per class."""
    data = cifar10(train=False)
    assert data.images.shape == (10000, 3, 32, 32) and torch.bincount(data.targets).tolist() == [1000] * 10
    assert data.classes == CLASSES
