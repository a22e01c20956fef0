"""Write Split-MNIST as chunk files, the input of the example pipeline (``examples/``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from retentive.data.files import SUFFIXES, write_chunk
from retentive.data.mnist import load_mnist_arrays
from retentive.data.scenarios import split_mnist
from retentive.data.tensors import TensorChunk


def export_split_mnist(
    output: str | os.PathLike[str],
    limit: int | None = None,
    suffix: str = ".npz",
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
) -> dict[str, list[Path]]:
    """Write ``output/{train,test}/chunk_{0..4}<suffix>``: the five two-digit chunks of each split.

    Images are stored as ``uint8`` (N, 1, 28, 28), so they read back exactly as
    :func:`retentive.data.load_mnist` gives them. ``limit`` keeps a random (seeded) subset of at
    most that many samples per chunk, for quick runs.
    """
    if suffix not in SUFFIXES:
        raise ValueError(f"unknown chunk format {suffix!r}; expected one of {list(SUFFIXES)}")
    if suffix == ".csv":
        raise ValueError("MNIST images are (1, 28, 28), not tabular; export them as .npz or .pt")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 samples per chunk, got {limit}")
    written: dict[str, list[Path]] = {}
    for split in ("train", "test"):
        images, labels = load_mnist_arrays(split, root=root)
        generator = torch.Generator().manual_seed(seed)
        paths = []
        for index, chunk in enumerate(split_mnist(TensorChunk(images.unsqueeze(1), labels))):
            if limit is not None and limit < len(chunk):
                chunk = chunk.subset(torch.randperm(len(chunk), generator=generator)[:limit].sort().values)
            paths.append(write_chunk(Path(output) / split / f"chunk_{index}{suffix}", chunk))
        written[split] = paths
    return written
