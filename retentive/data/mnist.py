"""MNIST from the standard idx files: found locally, or fetched into a cache.

Where it looks, in order: the ``root`` argument (``--data``); ``$RETENTIVE_DATA`` (the same
folder ``--data`` takes: the one holding the idx files; ``$RETENTIVE_DATA/mnist`` is also searched,
as earlier versions wanted the parent); the project's ``../shared/data/mnist``; the cache
(``$RETENTIVE_CACHE`` or ``~/.cache/retentive``) ``/mnist``. Files may be gzipped (``*.gz``) or
plain.

Fetching: :func:`ensure_mnist` (what every command that needs MNIST calls) and
``load_mnist(download=True)`` fetch the missing files into the cache, trying the mirrors in
:func:`mirrors` in order (``$RETENTIVE_MNIST_MIRROR``: a comma-separated list of base URLs, else
:data:`DEFAULT_MIRRORS`), each file checked against the MD5 of its uncompressed content, so a
re-compressed mirror still verifies. A file appears in the cache whole and verified or not at
all; when every mirror fails, :class:`MNISTNotFoundError` says what was tried and how to supply
the files. Python callers download nothing unless asked.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from retentive.data.downloads import atomic_write, cache_base, check_mirror, fetch_bytes, mirror_list, search_path
from retentive.data.tensors import TensorChunk
from retentive.errors import DataError

#: The standard files and the MD5 of their uncompressed bytes.
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SPLITS = {"train": "train", "test": "t10k"}
#: The standard mirrors, tried in order: torchvision's, TensorFlow's, and the original site.
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
DEFAULT_MIRROR = DEFAULT_MIRRORS[0]
MIRROR_ENV = "RETENTIVE_MNIST_MIRROR"
_IDX_DTYPES = {0x08: np.uint8}


class MNISTNotFoundError(DataError, FileNotFoundError):
    """No copy of an MNIST file was found (or fetched); the message lists every place tried."""


def mirrors() -> tuple[str, ...]:
    """The base URLs to fetch from, in order: ``$RETENTIVE_MNIST_MIRROR`` (comma-separated) or the defaults."""
    return mirror_list(MIRROR_ENV, DEFAULT_MIRRORS)


def cache_dir() -> Path:
    """The download cache: ``$RETENTIVE_CACHE/mnist`` or ``~/.cache/retentive/mnist``."""
    return cache_base() / "mnist"


def search_dirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for the idx files, in order."""
    return search_path("mnist", root)


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an idx file (big-endian dims after a 4-byte magic) into an array."""
    if len(data) < 4:
        raise ValueError(f"{source}: too short to be an idx file ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES:
        raise ValueError(f"{source}: not an unsigned-byte idx file (magic {data[:4].hex()})")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(f"{source}: idx header promises {expected} bytes for shape {shape}, file has {len(data)}")
    return np.frombuffer(data, dtype=_IDX_DTYPES[dtype_code], offset=header).reshape(shape)


def _read(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def _find(name: str, dirs: list[Path]) -> Path | None:
    for folder in dirs:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def download(
    name: str,
    mirror: str = DEFAULT_MIRROR,
    target_dir: Path | None = None,
    timeout: float = 60.0,
    progress: bool = False,
) -> Path:
    """Fetch ``name.gz`` from ``mirror`` into the cache, verify its MD5, and return its path.

    Raises :class:`MNISTNotFoundError` when the mirror cannot be reached and ``ValueError`` when
    what it serves is not the file; either way nothing is left in the cache.
    """
    if name not in FILES:
        raise ValueError(f"unknown MNIST file {name!r}; expected one of {sorted(FILES)}")
    check_mirror(mirror, "MNIST")
    folder = target_dir or cache_dir()
    url = mirror.rstrip("/") + f"/{name}.gz"
    try:
        payload = fetch_bytes(url, timeout, progress)
    except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts, refused connections
        raise MNISTNotFoundError(f"could not download {url}: {getattr(error, 'reason', error)}") from error
    try:
        raw = gzip.decompress(payload)
    except (OSError, EOFError) as error:
        raise ValueError(f"{url} is not a gzip file: {error}") from error
    digest = hashlib.md5(raw).hexdigest()
    if digest != FILES[name]:
        raise ValueError(f"{url} has MD5 {digest} (uncompressed), expected {FILES[name]}; refusing it")
    return atomic_write(folder / f"{name}.gz", payload)


def file_names(split: str) -> tuple[str, str]:
    """The images and labels file of ``split`` ('train' or 'test')."""
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; expected 'train' or 'test'")
    return f"{SPLITS[split]}-images-idx3-ubyte", f"{SPLITS[split]}-labels-idx1-ubyte"


def locate_mnist(
    root: str | os.PathLike[str] | None = None, splits: tuple[str, ...] = ("train", "test")
) -> Path | None:
    """The first folder on the search path that holds every file of ``splits``, or ``None``.

    Tests and tools use it to find MNIST exactly as the library does.
    """
    names = [name for split in splits for name in file_names(split)]
    for folder in search_dirs(root):
        if all(_find(name, [folder]) is not None for name in names):
            return folder
    return None


def fetch_missing(
    names: list[str], mirror_list: tuple[str, ...] | None = None, progress: bool = False, announce: bool = False
) -> None:
    """Fetch each of ``names`` into the cache from the first mirror that serves it verified.

    ``announce`` prints one line on stderr saying where from and where to. When every mirror fails
    for a file, :class:`MNISTNotFoundError` lists each URL tried and why, and says how to supply
    the files; files fetched before it stay (each is complete and verified), and a cache folder
    this call created and left empty is removed.
    """
    import sys

    mirror_list = mirror_list or mirrors()
    target = cache_dir()
    created = not target.exists()
    if announce:
        print(
            f"retentive: fetching MNIST from {mirror_list[0]} into {target}"
            + (f" (then {', '.join(mirror_list[1:])} if that fails)" if len(mirror_list) > 1 else ""),
            file=sys.stderr,
            flush=True,
        )
    try:
        for name in names:
            failures = []
            for mirror in mirror_list:
                try:
                    download(name, mirror=mirror, target_dir=target, progress=progress)
                    break
                except (MNISTNotFoundError, ValueError) as error:
                    failures.append(str(error))
            else:
                raise MNISTNotFoundError(
                    f"MNIST is not on this machine and could not be fetched: {'; '.join(failures)}. "
                    "Put the four idx files (plain or .gz) in a folder and pass --data FOLDER or set "
                    f"RETENTIVE_DATA=FOLDER, or set {MIRROR_ENV} to a mirror that can be reached"
                )
    finally:
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()


def ensure_mnist(root: str | os.PathLike[str] | None = None, splits: tuple[str, ...] = ("train", "test")) -> None:
    """Make sure every file of ``splits`` can be read: fetch the missing ones into the cache.

    What each command that needs MNIST calls before it starts work, so that a fresh machine runs
    the demo, and an offline one fails at once with one line saying what to do.
    """
    import sys

    dirs = search_dirs(root)
    missing = [name for split in splits for name in file_names(split) if _find(name, dirs) is None]
    if missing:
        fetch_missing(missing, progress=sys.stderr.isatty(), announce=True)


def load_mnist_arrays(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download_missing: bool = False,
    mirror: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Return ``(images uint8 (N, 28, 28), labels int64 (N,))`` for ``split`` ('train' or 'test').

    ``download_missing`` fetches missing files: from ``mirror`` alone when given, else from
    :func:`mirrors` in order.
    """
    dirs = search_dirs(root)
    arrays = []
    for name in file_names(split):
        path = _find(name, dirs)
        if path is None and download_missing:
            if mirror is None:
                fetch_missing([name])
                path = _find(name, [cache_dir()])
            else:
                path = download(name, mirror=mirror)
        if path is None:
            looked = ", ".join(str(d) for d in dirs)
            raise MNISTNotFoundError(
                f"MNIST file {name}[.gz] not found; looked in: {looked}. Pass --data FOLDER (root=... in Python) "
                "or set RETENTIVE_DATA=FOLDER to the folder holding the idx files, or pass download=True to "
                "fetch them into the cache"
            )
        arrays.append(torch.from_numpy(parse_idx(_read(path), str(path)).copy()))
    images, labels = arrays
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels.long()


def load_mnist(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    mirror: str | None = None,
) -> TensorChunk:
    """MNIST as a dataset of ``(float32 image (1, 28, 28) in [0, 1], int64 label)``."""
    images, labels = load_mnist_arrays(split, root=root, download_missing=download, mirror=mirror)
    return TensorChunk(images.unsqueeze(1).float().div_(255.0), labels)
