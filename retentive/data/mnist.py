"""MNIST from the standard idx files: found locally, or fetched into a cache when asked.

Where it looks, in order: the ``root`` argument; ``$RETENTIVE_DATA/mnist``; the project's
``../shared/data/mnist``; the cache (``$RETENTIVE_CACHE`` or ``~/.cache/retentive``) ``/mnist``.
Files may be gzipped (``*.gz``) or plain. ``download=True`` fetches missing files into the cache
and checks each against the MD5 of its uncompressed content, so a re-compressed mirror still
verifies. Nothing is downloaded unless asked.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from retentive.data.tensors import TensorChunk

#: The standard files and the MD5 of their uncompressed bytes.
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SPLITS = {"train": "train", "test": "t10k"}
DEFAULT_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_IDX_DTYPES = {0x08: np.uint8}


class MNISTNotFoundError(FileNotFoundError):
    """No copy of an MNIST file was found; the message lists every place that was searched."""


def cache_dir() -> Path:
    """The download cache: ``$RETENTIVE_CACHE/mnist`` or ``~/.cache/retentive/mnist``."""
    base = os.environ.get("RETENTIVE_CACHE") or Path.home() / ".cache" / "retentive"
    return Path(base) / "mnist"


def search_dirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for the idx files, in order."""
    dirs: list[Path] = []
    if root is not None:
        dirs.append(Path(root))
    env = os.environ.get("RETENTIVE_DATA")
    if env:
        dirs.append(Path(env) / "mnist")
    project = Path(__file__).resolve().parents[2]
    dirs.append(project.parent / "shared" / "data" / "mnist")
    dirs.append(Path.cwd().parent / "shared" / "data" / "mnist")
    dirs.append(cache_dir())
    return list(dict.fromkeys(dirs))


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


def download(name: str, mirror: str = DEFAULT_MIRROR, target_dir: Path | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``name.gz`` from ``mirror`` into the cache, verify its MD5, and return its path."""
    if name not in FILES:
        raise ValueError(f"unknown MNIST file {name!r}; expected one of {sorted(FILES)}")
    folder = target_dir or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    url = mirror.rstrip("/") + f"/{name}.gz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except OSError as error:
        raise MNISTNotFoundError(f"could not download {url}: {error}") from error
    try:
        raw = gzip.decompress(payload)
    except (OSError, EOFError) as error:
        raise ValueError(f"{url} is not a gzip file: {error}") from error
    digest = hashlib.md5(raw).hexdigest()
    if digest != FILES[name]:
        raise ValueError(f"{url} has MD5 {digest} (uncompressed), expected {FILES[name]}; refusing it")
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as handle:
        handle.write(payload)
    final = folder / f"{name}.gz"
    shutil.move(handle.name, final)
    return final


def load_mnist_arrays(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download_missing: bool = False,
    mirror: str = DEFAULT_MIRROR,
) -> tuple[Tensor, Tensor]:
    """Return ``(images uint8 (N, 28, 28), labels int64 (N,))`` for ``split`` ('train' or 'test')."""
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; expected 'train' or 'test'")
    dirs = search_dirs(root)
    arrays = []
    for kind in ("images", "labels"):
        name = f"{SPLITS[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
        path = _find(name, dirs)
        if path is None and download_missing:
            path = download(name, mirror=mirror)
        if path is None:
            looked = ", ".join(str(d) for d in dirs)
            raise MNISTNotFoundError(
                f"MNIST file {name}[.gz] not found; looked in: {looked}. Pass root=..., set RETENTIVE_DATA, "
                "or pass download=True to fetch it into the cache"
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
    mirror: str = DEFAULT_MIRROR,
) -> TensorChunk:
    """MNIST as a dataset of ``(float32 image (1, 28, 28) in [0, 1], int64 label)``."""
    images, labels = load_mnist_arrays(split, root=root, download_missing=download, mirror=mirror)
    return TensorChunk(images.unsqueeze(1).float().div_(255.0), labels)
