"""The image-folder reader on real CIFAR-10 images: decode, labels, the cache, and each bad input.

The images are the project's shared copy, JPEG re-encoded at quality ~75 (not the canonical
pixels): decode correctness is checked against Pillow's decode of the same files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_support import sample_folders
from PIL import Image

from retentive.data import ImageDataset, image_folder
from retentive.data import images as images_module
from retentive.data.cifar import CLASSES
from retentive.errors import DataError


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return sample_folders(tmp_path_factory.mktemp("cifar-sample"))


@pytest.fixture
def folder(sample, tmp_path) -> Path:
    """A private copy of the sample's train split (tests change it)."""
    return Path(shutil.copytree(sample / "train", tmp_path / "train"))


def _pillow(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1).copy())


def test_decode_equals_pillow_and_labels_follow_sorted_folders(folder):
    data = image_folder(folder, cache=False)
    assert isinstance(data, ImageDataset) and data.classes == CLASSES
    assert data.images.shape == (300, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.targets.dtype == torch.int64 and data.targets.tolist() == [c for c in range(10) for _ in range(30)]
    # the shared copy is JPEG (quality ~75): compare with Pillow's decode of the same file, not CIFAR's pixels
    for index in (0, 31, 299):
        name = CLASSES[index // 30]
        path = sorted((folder / name).iterdir())[index % 30]
        assert torch.equal(data.images[index], _pillow(path))
        image, label = data[index]
        assert torch.equal(image, data.images[index]) and label == index // 30 and isinstance(label, int)


def test_png_and_grayscale_decode_exactly(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {name: rng.integers(0, 256, (2, 8, 6, 3), dtype=np.uint8) for name in ("b", "a")}
    for name, stack in arrays.items():
        (tmp_path / name).mkdir()
        for i, array in enumerate(stack):
            Image.fromarray(array).save(tmp_path / name / f"{i}.png")
    data = image_folder(tmp_path, cache=False)
    assert data.classes == ("a", "b") and data.targets.tolist() == [0, 0, 1, 1]
    assert torch.equal(data.images[2], torch.from_numpy(arrays["b"][0].transpose(2, 0, 1).copy()))
    gray = image_folder(tmp_path, mode="L", cache=False)
    assert gray.images.shape == (4, 1, 8, 6)
    expected = np.asarray(Image.fromarray(arrays["a"][1]).convert("L"))
    assert torch.equal(gray.images[1, 0], torch.from_numpy(expected.copy()))


def test_cache_beside_the_data_is_reused(folder, monkeypatch):
    first = image_folder(folder)
    assert (folder / images_module.CACHE_NAME).is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite a valid cache")

    monkeypatch.setattr(images_module, "decode_all", no_decoding)
    again = image_folder(folder)
    assert torch.equal(again.images, first.images) and torch.equal(again.targets, first.targets)
    assert again.classes == first.classes


def test_a_changed_folder_is_decoded_again(folder):
    first = image_folder(folder)
    cat = sorted((folder / "cat").iterdir())
    shutil.copyfile(folder / "ship" / "0000.jpg", cat[0])  # another image under an old name
    changed = image_folder(folder)
    assert torch.equal(changed.images[90], _pillow(folder / "ship" / "0000.jpg"))
    assert not torch.equal(changed.images[90], first.images[90])
    cat[1].unlink()  # one file fewer
    assert len(image_folder(folder)) == 299
    assert len(image_folder(folder, mode="L").images[0]) == 1  # another mode is another cache key


def test_a_corrupt_cache_is_decoded_again(folder):
    first = image_folder(folder)
    (folder / images_module.CACHE_NAME).write_bytes(b"not a torch file")
    assert torch.equal(image_folder(folder).images, first.images)


def test_read_only_folder_caches_under_the_cache_dir(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(images_module.os, "access", lambda path, mode: False)  # root may write anywhere
    image_folder(folder)
    assert not (folder / images_module.CACHE_NAME).exists()
    assert [p.name.startswith("train-") for p in (tmp_path / "cache" / "image-folders").iterdir()] == [True]


def test_an_empty_class_folder_is_a_clear_error(folder):
    (folder / "zebra").mkdir()
    with pytest.raises(DataError, match=r"class folder .*zebra.* holds no images"):
        image_folder(folder)


def test_a_non_image_file_is_a_clear_error(folder):
    (folder / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.txt.* is not a JPEG or PNG file"):
        image_folder(folder)


def test_an_undecodable_image_is_a_clear_error(folder):
    (folder / "dog" / "9999.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"9999\.jpg.* could not be decoded as an image"):
        image_folder(folder, cache=False)


def test_mixed_sizes_and_missing_class_folders_are_clear_errors(folder, tmp_path):
    Image.new("RGB", (16, 16)).save(folder / "dog" / "big.png")
    with pytest.raises(DataError, match=r"big\.png.* is 16x16 .* every image must have the same size"):
        image_folder(folder, cache=False)
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="has no class folders"):
        image_folder(tmp_path / "flat")
    with pytest.raises(DataError, match="does not exist"):
        image_folder(tmp_path / "nowhere")


def test_hidden_files_are_skipped(folder):
    (folder / "dog" / ".DS_Store").write_bytes(b"\x00")
    (folder / ".hidden").mkdir()
    assert len(image_folder(folder, cache=False)) == 300
    assert os.path.exists(folder / "dog" / ".DS_Store")
