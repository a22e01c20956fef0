"""Domain-incremental scenarios: every chunk holds the same classes under a new input transform.

Permuted-MNIST (a fixed pixel shuffle per task) and Rotated-MNIST (a fixed rotation per task) are
the DER paper's domain-IL benchmarks, 20 tasks of the full MNIST each. Twenty transformed copies of
MNIST do not need to sit in memory at once, so the chunks are built when they are indexed
(:class:`LazyChunks`); the same ``seed`` gives the same transforms for the train and test split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import overload

import torch
from torch import Tensor

from retentive.data.permutations import permute_pixels, random_permutations
from retentive.data.rotations import random_angles, rotate
from retentive.data.tensors import TensorChunk

InputTransform = Callable[[Tensor], Tensor]


class LazyChunks(Sequence[TensorChunk]):
    """A sequence of chunks built by ``build(i)`` when indexed; kept afterwards only with ``cache``.

    ``names[i]`` describes chunk ``i`` (e.g. ``"rotation 37.5 deg"``) for tables and logs.
    """

    def __init__(
        self, build: Callable[[int], TensorChunk], length: int, names: Sequence[str] | None = None, cache: bool = False
    ) -> None:
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if names is not None and len(names) != length:
            raise ValueError(f"{len(names)} names for {length} chunks")
        self._build = build
        self._length = int(length)
        self.names = list(names) if names is not None else [f"chunk {i}" for i in range(length)]
        self._cache: dict[int, TensorChunk] | None = {} if cache else None

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> TensorChunk: ...

    @overload
    def __getitem__(self, index: slice) -> list[TensorChunk]: ...

    def __getitem__(self, index: int | slice) -> TensorChunk | list[TensorChunk]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        i = int(index)
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(f"chunk index {index} out of range for {self._length} chunks")
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        chunk = self._build(i)
        if self._cache is not None:
            self._cache[i] = chunk
        return chunk

    def __iter__(self) -> Iterator[TensorChunk]:
        return (self[i] for i in range(self._length))


def _transformed(
    dataset: TensorChunk, transforms: Sequence[InputTransform], with_task_ids: bool, task: int
) -> TensorChunk:
    inputs = transforms[task](dataset.inputs)
    if inputs.shape[0] != len(dataset):
        raise ValueError(f"transform {task} returned {inputs.shape[0]} inputs for {len(dataset)} samples")
    task_ids = torch.full_like(dataset.targets, task) if with_task_ids else None
    return TensorChunk(inputs, dataset.targets, task_ids)


def domain_incremental(
    dataset: TensorChunk,
    transforms: Sequence[InputTransform],
    with_task_ids: bool = True,
    names: Sequence[str] | None = None,
    cache: bool = False,
) -> LazyChunks:
    """One chunk per transform: chunk ``i`` is every sample of ``dataset`` with ``transforms[i]``
    applied to the whole input tensor, labels unchanged (task id ``i`` when ``with_task_ids``)."""
    if len(transforms) == 0:
        raise ValueError("domain_incremental needs at least one transform")
    return LazyChunks(partial(_transformed, dataset, list(transforms), with_task_ids), len(transforms), names, cache)


def permuted_mnist(
    dataset: TensorChunk, num_tasks: int = 20, seed: int = 0, with_task_ids: bool = True, cache: bool = False
) -> LazyChunks:
    """Permuted-MNIST: task ``i`` shuffles the pixels with permutation ``i`` (every task permuted,
    as in the DER protocol); ``seed`` fixes the permutations."""
    pixels = int(dataset.inputs[0].numel())
    permutations = random_permutations(num_tasks, pixels, seed)
    transforms = [partial(permute_pixels, permutation=p) for p in permutations]
    names = [f"permutation {i}" for i in range(num_tasks)]
    return domain_incremental(dataset, transforms, with_task_ids, names, cache)


def rotated_mnist(
    dataset: TensorChunk,
    num_tasks: int = 20,
    seed: int = 0,
    mode: str = "nearest",
    low: float = 0.0,
    high: float = 180.0,
    with_task_ids: bool = True,
    cache: bool = False,
) -> LazyChunks:
    """Rotated-MNIST: task ``i`` rotates every image by angle ``i``, uniform in ``[low, high)``
    degrees (DER protocol: [0, 180), nearest neighbour); ``seed`` fixes the angles."""
    angles = random_angles(num_tasks, seed, low, high).tolist()
    transforms = [partial(rotate, degrees=a, mode=mode) for a in angles]
    names = [f"rotation {a:.1f} deg" for a in angles]
    return domain_incremental(dataset, transforms, with_task_ids, names, cache)
