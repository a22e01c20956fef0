"""A few hundred real CIFAR-10 images in class folders, taken from the project's shared copy.

The shared copy (``../shared/data/cifar10/cifar10-images.tar.gz``) is JPEG re-encoded at quality
~75: its pixels are close to, not identical with, the canonical archives'. Tests compare the
readers with Pillow's decode of the same files, never with the canonical pixels. On a machine
without the shared copy the images come from ``cifar10(download=True)``, saved as PNG.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from retentive.data.cifar import CLASSES, IMAGES_ARCHIVE, search_dirs


def shared_archive() -> Path | None:
    for folder in search_dirs():
        if (folder / IMAGES_ARCHIVE).is_file():
            return folder / IMAGES_ARCHIVE
    return None


def sample_folders(target: Path, per_class: int = 30, test_per_class: int = 10) -> Path:
    """``target/train/<class>/`` and ``target/test/<class>/``: the first images of each class."""
    want = {"train": per_class, "test": test_per_class}
    archive = shared_archive()
    if archive is None:
        return _from_download(target, want)
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] not in want:
                continue
            key = (parts[0], parts[1])
            if taken.get(key, 0) >= want[parts[0]]:
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            (target / parts[0] / parts[1]).mkdir(parents=True, exist_ok=True)
            (target / member.name).write_bytes(handle.read())
            taken[key] = taken.get(key, 0) + 1
            if len(taken) == 20 and all(taken[k] >= want[k[0]] for k in taken):
                break
    return target


def _from_download(target: Path, want: dict[str, int]) -> Path:
    from PIL import Image

    from retentive.data import cifar10

    for split, count in want.items():
        data = cifar10(train=split == "train", download=True)
        for label, name in enumerate(CLASSES):
            (target / split / name).mkdir(parents=True, exist_ok=True)
            index = (data.targets == label).nonzero().squeeze(1)[:count]
            for n, i in enumerate(index.tolist()):
                array = np.ascontiguousarray(data.images[i].permute(1, 2, 0).numpy())
                Image.fromarray(array).save(target / split / name / f"{n:04d}.png")
    return target
