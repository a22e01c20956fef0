"""CIFAR-10 from its canonical binary archive, or from images in class folders.

Where it looks, in order, for each split: the canonical binary (``cifar-10-binary.tar.gz``, or
its unpacked ``cifar-10-batches-bin/`` folder) in any folder of the search path, then an image
folder (``train/<class>/`` and ``test/<class>/``, or a ``cifar10-images.tar.gz`` of them, unpacked
into the cache) in any folder of it. The search path, as for MNIST: the ``root`` argument
(``--data``); ``$RETENTIVE_DATA`` and ``$RETENTIVE_DATA/cifar10``; the project's
``../shared/data/cifar10``; the cache (``$RETENTIVE_CACHE`` or ``~/.cache/retentive``)
``/cifar10``.

Fetching: ``cifar10(download=True)`` and :func:`ensure_cifar10` (what commands call) fetch the
binary archive into the cache when no copy of either kind is found, from the mirrors in
:func:`mirrors` in order (``$RETENTIVE_CIFAR10_MIRROR``: comma-separated base URLs, else
:data:`DEFAULT_MIRRORS`), checked against its MD5 and written whole or not at all.

The images of an image folder may differ from the binary's pixels: a JPEG copy (such as the
project's shared one, re-encoded at quality ~75) is close to, not identical with, the original.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from retentive.data.downloads import atomic_write, cache_base, check_mirror, fetch_bytes, mirror_list, search_path
from retentive.data.images import ImageDataset, image_folder
from retentive.errors import DataError

ARCHIVE = "cifar-10-binary.tar.gz"
#: The MD5 of the canonical ``cifar-10-binary.tar.gz``.
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
BATCH_DIR = "cifar-10-batches-bin"
BATCHES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
IMAGES_ARCHIVE = "cifar10-images.tar.gz"
#: The labels in CIFAR-10's order (which is also their alphabetical order, an image folder's).
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DEFAULT_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
MIRROR_ENV = "RETENTIVE_CIFAR10_MIRROR"
RECORD = 1 + 3 * 32 * 32  # a label byte, then the red, green and blue 32x32 planes


class CIFAR10NotFoundError(DataError, FileNotFoundError):
    """No copy of CIFAR-10 was found (or fetched); the message lists every place tried."""


def mirrors() -> tuple[str, ...]:
    """The base URLs to fetch from: ``$RETENTIVE_CIFAR10_MIRROR`` (comma-separated) or the default."""
    return mirror_list(MIRROR_ENV, DEFAULT_MIRRORS)


def cache_dir() -> Path:
    """The download cache: ``$RETENTIVE_CACHE/cifar10`` or ``~/.cache/retentive/cifar10``."""
    return cache_base() / "cifar10"


def search_dirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for CIFAR-10, in order."""
    return search_path("cifar10", root)


def parse_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: ``(images uint8 (N, 3, 32, 32), labels uint8 (N,))``."""
    if not data or len(data) % RECORD:
        raise DataError(f"{source}: {len(data)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0]
    if int(labels.max()) >= len(CLASSES):
        raise DataError(f"{source}: label {int(labels.max())} is out of range; CIFAR-10 labels are 0-9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _read_batches(location: Path, split: str) -> dict[str, bytes]:
    """The raw batch files of ``split`` from an archive or an unpacked folder."""
    if location.is_dir():
        return {name: (location / name).read_bytes() for name in BATCHES[split]}
    wanted = {f"{BATCH_DIR}/{name}": name for name in BATCHES[split]}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(location, "r:gz") as archive:
            for member in archive:
                if member.name in wanted and (handle := archive.extractfile(member)) is not None:
                    found[wanted[member.name]] = handle.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(f"{str(location)!r} is truncated or corrupt ({error}); delete it and fetch it again") from error
    missing = sorted(set(wanted.values()) - set(found))
    if missing:
        raise DataError(f"{str(location)!r} has no {', '.join(missing)}; it is not the CIFAR-10 binary archive")
    return found


def read_binary(location: Path, split: str) -> ImageDataset:
    """``split`` from the binary archive or its unpacked ``cifar-10-batches-bin`` folder."""
    raw = _read_batches(location, split)
    parts = [parse_batch(raw[name], f"{location}/{name}") for name in BATCHES[split]]
    images = torch.from_numpy(np.concatenate([images for images, _ in parts]))
    labels = torch.from_numpy(np.concatenate([labels for _, labels in parts]).astype(np.int64))
    return ImageDataset(images, labels, CLASSES)


def _binary_in(folder: Path, split: str) -> Path | None:
    for candidate in (folder / BATCH_DIR, folder):
        if all((candidate / name).is_file() for name in BATCHES[split]):
            return candidate
    return folder / ARCHIVE if (folder / ARCHIVE).is_file() else None


def _unpacked(archive: Path) -> Path:
    """The image archive unpacked into the cache once (keyed by its size and time), atomically."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / f"images-{key}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(scratch, filter="data")
        os.replace(scratch, target)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise DataError(f"{str(archive)!r} is truncated or corrupt ({error})") from error
    except OSError:
        if not target.is_dir():  # not another process that unpacked it first
            raise
    finally:
        if scratch.exists():
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _folder_in(folder: Path, split: str) -> Path | None:
    if (folder / split).is_dir():
        return folder / split
    if (folder / IMAGES_ARCHIVE).is_file():
        return _unpacked(folder / IMAGES_ARCHIVE) / split
    return None


def locate(root: str | os.PathLike[str] | None = None, split: str = "train") -> tuple[str, Path] | None:
    """``("binary" | "images", where)`` for the copy of ``split`` :func:`cifar10` would read."""
    if split not in BATCHES:
        raise ValueError(f"unknown CIFAR-10 split {split!r}; expected 'train' or 'test'")
    dirs = search_dirs(root)
    for folder in dirs:
        if (binary := _binary_in(folder, split)) is not None:
            return "binary", binary
    for folder in dirs:
        if (images := _folder_in(folder, split)) is not None:
            return "images", images
    return None


def download(mirror: str, target_dir: Path | None = None, timeout: float = 60.0, progress: bool = False) -> Path:
    """Fetch the binary archive from ``mirror`` into the cache, check its MD5, return its path.

    Raises :class:`CIFAR10NotFoundError` when the mirror cannot be reached and :class:`DataError`
    when what it serves is not the archive; either way nothing is left in the cache.
    """
    check_mirror(mirror, "CIFAR-10")
    url = mirror.rstrip("/") + f"/{ARCHIVE}"
    try:
        payload = fetch_bytes(url, timeout, progress)
    except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts, refused connections
        raise CIFAR10NotFoundError(f"could not download {url}: {getattr(error, 'reason', error)}") from error
    digest = hashlib.md5(payload).hexdigest()
    if digest != ARCHIVE_MD5:
        raise DataError(f"{url} has MD5 {digest}, expected {ARCHIVE_MD5} ({len(payload)} bytes); refusing it")
    return atomic_write((target_dir or cache_dir()) / ARCHIVE, payload)


def fetch(mirror_urls: tuple[str, ...] | None = None, progress: bool = False, announce: bool = False) -> Path:
    """The archive fetched into the cache from the first mirror that serves it verified."""
    mirror_urls = mirror_urls or mirrors()
    if announce:
        print(f"retentive: fetching CIFAR-10 from {mirror_urls[0]} into {cache_dir()}", file=sys.stderr, flush=True)
    failures = []
    for mirror in mirror_urls:
        try:
            return download(mirror, progress=progress)
        except DataError as error:
            failures.append(str(error))
    raise CIFAR10NotFoundError(
        f"CIFAR-10 is not on this machine and could not be fetched: {'; '.join(failures)}. Put {ARCHIVE} (or "
        "train/<class>/ and test/<class>/ image folders) in a folder and pass --data FOLDER or set "
        f"RETENTIVE_DATA=FOLDER, or set {MIRROR_ENV} to a mirror that can be reached"
    )


def ensure_cifar10(root: str | os.PathLike[str] | None = None) -> None:
    """Fetch the archive into the cache unless some copy of both splits is found (commands call it)."""
    if locate(root, "train") is None or locate(root, "test") is None:
        fetch(progress=sys.stderr.isatty(), announce=True)


def cifar10(
    root: str | os.PathLike[str] | None = None, train: bool = True, download: bool = False, mirror: str | None = None
) -> ImageDataset:
    """CIFAR-10's train (50,000) or test (10,000) split as ``(uint8 image (3, 32, 32), int label)``.

    ``download`` fetches the binary archive when no copy is found: from ``mirror`` alone when
    given, else from :func:`mirrors` in order. Python callers download nothing unless asked.
    """
    split = "train" if train else "test"
    found = locate(root, split)
    if found is None and download:
        fetch((mirror,) if mirror else None)
        found = locate(root, split)
    if found is None:
        looked = ", ".join(str(d) for d in search_dirs(root))
        raise CIFAR10NotFoundError(
            f"CIFAR-10 ({split}) not found; looked in: {looked} for {ARCHIVE}, {BATCH_DIR}/, {split}/<class>/ image "
            f"folders or {IMAGES_ARCHIVE}. Pass --data FOLDER (root=... in Python) or set RETENTIVE_DATA=FOLDER, "
            "or pass download=True to fetch the archive into the cache"
        )
    kind, where = found
    if kind == "binary":
        return read_binary(where, split)
    dataset = image_folder(where)
    if dataset.classes != CLASSES:
        raise DataError(f"{str(where)!r} has class folders {list(dataset.classes)}; CIFAR-10's are {list(CLASSES)}")
    return dataset


def archive_bytes(train: ImageDataset, test: ImageDataset) -> bytes:
    """``train`` and ``test`` written as a CIFAR-10 binary archive, in the format
    :func:`read_binary` reads: what tests serve, and a way to hand on a subset."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for split, dataset in (("train", train), ("test", test)):
            if dataset.images.shape[1:] != (3, 32, 32):
                raise ValueError(f"CIFAR-10 records hold 3x32x32 images, got {tuple(dataset.images.shape[1:])}")
            labels = dataset.targets.numpy().astype(np.uint8)[:, None]
            records = np.concatenate([labels, dataset.images.reshape(len(dataset), -1).numpy()], axis=1)
            names = BATCHES[split]
            for name, part in zip(names, np.array_split(records, len(names)), strict=True):
                data = part.tobytes()
                info = tarfile.TarInfo(f"{BATCH_DIR}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
