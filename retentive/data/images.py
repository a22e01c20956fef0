"""Images in class folders, the commonest way users hold their own pictures, decoded once and cached.

``root/<class>/<file>.jpg|.jpeg|.png``: the label of a file is the index of its folder among the
class folders in sorted order (``root/cat`` is 0 and ``root/dog`` 1), and within a class files
are taken in sorted name order. Every image is decoded with Pillow, in parallel threads (Pillow
releases the GIL while it decodes), into one uint8 ``(N, C, H, W)`` tensor. The result is cached
beside the data (``root/.retentive-images.pt``) or, where that folder cannot be written, in
``$RETENTIVE_CACHE/image-folders/``; the cache records a fingerprint of every file's name, size
and modification time, so a folder whose files changed is decoded again rather than served stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from retentive.data.downloads import atomic_write, cache_base
from retentive.data.tensors import TensorChunk
from retentive.errors import DataError

#: The file types read as images (by suffix, case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CACHE_NAME = ".retentive-images.pt"
_FORMAT = 1  # bump when the cache's layout changes: older caches are then decoded again


class ImageDataset(TensorChunk):
    """A decoded image collection: ``dataset[i]`` is ``(uint8 image (C, H, W), int label)``.

    The whole split is at hand as tensors, ``images`` (N, C, H, W) uint8 and ``targets`` (N,)
    int64, so scenarios cut it into chunks by indexing rather than sample by sample; ``classes``
    names the labels. Indexing with a tensor or a list returns a whole batch, as a
    :class:`TensorChunk` does.
    """

    def __init__(self, images: Tensor, targets: Tensor, classes: Sequence[str]) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        super().__init__(images, targets.long())
        self.classes = tuple(classes)

    @property
    def images(self) -> Tensor:
        return self.inputs

    def __getitem__(self, index: int | list[int] | Tensor | slice) -> tuple[object, ...]:
        if isinstance(index, int):
            return self.images[index], int(self.targets[index])
        return super().__getitem__(index)

    def as_float(self) -> TensorChunk:
        """The images as float32 in [0, 1] (what ``ToTensor`` gives), for models that take floats."""
        return TensorChunk(self.images.float().div_(255.0), self.targets.clone())


def list_images(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """The class names and every ``(file, label)`` under ``root``, checked: a clear error for an
    empty class folder, a file that is not an image, or a folder with no class folders at all.
    Hidden files and folders (``.DS_Store``, the cache) are skipped."""
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} does not exist or is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"image folder {str(root)!r} has no class folders; expected {root}/<class>/<image>.jpg|.png "
            "(the label of an image is the index of its folder in sorted order)"
        )
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        entries = sorted(p for p in (root / name).iterdir() if not p.name.startswith("."))
        if not entries:
            raise DataError(f"class folder {str(root / name)!r} holds no images; remove it or add its images")
        for entry in entries:
            if not entry.is_file() or entry.suffix.lower() not in IMAGE_SUFFIXES:
                kind = "a folder" if entry.is_dir() else "not a JPEG or PNG file"
                raise DataError(
                    f"{str(entry)!r} is {kind}; a class folder holds only {'/'.join(IMAGE_SUFFIXES)} images"
                )
            files.append((entry, label))
    return classes, files


def fingerprint(root: Path, files: Sequence[tuple[Path, int]], mode: str) -> str:
    """A digest of every file's relative name, label, size and modification time, and the mode."""
    digest = hashlib.sha256(f"{_FORMAT}\0{mode}\n".encode())
    for path, label in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def decode(path: Path, mode: str = "RGB") -> np.ndarray:
    """One image as a uint8 ``(C, H, W)`` array; a :class:`DataError` naming the file if Pillow
    cannot read it (a truncated JPEG, a text file named ``.png``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            array = np.asarray(image.convert(mode))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{str(path)!r} could not be decoded as an image: {error}") from error
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_all(files: Sequence[tuple[Path, int]], mode: str = "RGB", workers: int | None = None) -> Tensor:
    """Every file decoded (threads in parallel) into one uint8 ``(N, C, H, W)`` tensor; all the
    images must have one size, else the error names the first file of another size."""
    if not files:
        raise DataError("no images to decode")
    workers = workers or min(8, os.cpu_count() or 1)
    first = decode(files[0][0], mode)
    out = np.empty((len(files), *first.shape), dtype=np.uint8)

    def put(i: int) -> None:
        array = decode(files[i][0], mode)
        if array.shape != first.shape:
            raise DataError(
                f"{str(files[i][0])!r} is {array.shape[1]}x{array.shape[2]} with {array.shape[0]} channels, but "
                f"{str(files[0][0])!r} is {first.shape[1]}x{first.shape[2]} with {first.shape[0]}: an image folder "
                "becomes one tensor, so every image must have the same size"
            )
        out[i] = array

    out[0] = first
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, range(1, len(files)), chunksize=256))
    return torch.from_numpy(out)


def cache_path(root: Path) -> Path:
    """Where the decoded folder is cached: beside the data when the folder can be written, else in
    ``$RETENTIVE_CACHE/image-folders/`` under a name derived from the folder's absolute path."""
    if os.access(root, os.W_OK):
        return root / CACHE_NAME
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_base() / "image-folders" / f"{root.name}-{key}.pt"


def _load_cache(path: Path, key: str) -> ImageDataset | None:
    try:
        saved = torch.load(path, weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - an unreadable cache is decoded again, never trusted
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    return ImageDataset(saved["images"], saved["targets"], saved["classes"])


def image_folder(
    path: str | os.PathLike[str],
    *,
    mode: str = "RGB",
    cache: bool | str | os.PathLike[str] = True,
    workers: int | None = None,
) -> ImageDataset:
    """The images under ``path`` (``path/<class>/<image>``) as an :class:`ImageDataset`.

    ``mode`` is Pillow's (``"RGB"``: 3 channels; ``"L"``: 1). ``cache``: True caches the decoded
    tensor as the module says, a path caches it there, False decodes every time. ``workers``:
    decoding threads (default: the CPUs, at most 8).
    """
    root = Path(path)
    classes, files = list_images(root)
    key = fingerprint(root, files, mode)
    target = None if cache is False else cache_path(root) if cache is True else Path(cache)
    if target is not None and (hit := _load_cache(target, key)) is not None:
        return hit
    images = decode_all(files, mode, workers)
    dataset = ImageDataset(images, torch.tensor([label for _, label in files], dtype=torch.long), classes)
    if target is not None:
        buffer = io.BytesIO()
        torch.save({"key": key, "images": images, "targets": dataset.targets, "classes": list(classes)}, buffer)
        with contextlib.suppress(OSError):  # a read-only place: only the next call decodes again
            atomic_write(target, buffer.getvalue())
    return dataset
