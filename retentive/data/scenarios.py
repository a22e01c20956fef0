"""Scenarios: how one dataset is cut into the chunks a pipeline receives.

Every function takes a :class:`TensorChunk` of ``(x, y)`` and returns a list of chunks; a ``seed``
fixes every random choice (class grouping, sample split, subsets). Domain-incremental scenarios,
whose chunks are transformed copies of the data, live in :mod:`retentive.data.domains`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from retentive.data.tensors import TensorChunk

SPLIT_MNIST_CLASSES: tuple[tuple[int, ...], ...] = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
#: Seq-CIFAR-10's tasks (the DER paper's): airplane/automobile, bird/cat, deer/dog, frog/horse, ship/truck.
SEQ_CIFAR10_CLASSES: tuple[tuple[int, ...], ...] = SPLIT_MNIST_CLASSES


def _with_task(chunk: TensorChunk, task: int) -> TensorChunk:
    return TensorChunk(chunk.inputs, chunk.targets, torch.full_like(chunk.targets, task))


def _check_chunks(num_chunks: int, available: int, what: str) -> None:
    if not isinstance(num_chunks, int) or isinstance(num_chunks, bool) or num_chunks < 1:
        raise ValueError(f"num_chunks must be an int >= 1, got {num_chunks!r}")
    if num_chunks > available:
        raise ValueError(f"cannot cut {available} {what} into {num_chunks} non-empty chunks")


def group_classes(classes: Sequence[int], num_chunks: int, seed: int | None = None) -> list[list[int]]:
    """Split ``classes`` into ``num_chunks`` contiguous groups of near-equal size (the first groups
    take the remainder); with ``seed`` the classes are shuffled first, so the grouping is random."""
    ordered = sorted(int(c) for c in set(int(c) for c in classes))
    _check_chunks(num_chunks, len(ordered), "classes")
    if seed is not None:
        g = torch.Generator().manual_seed(int(seed))
        ordered = [ordered[i] for i in torch.randperm(len(ordered), generator=g).tolist()]
    sizes = [len(ordered) // num_chunks + (1 if i < len(ordered) % num_chunks else 0) for i in range(num_chunks)]
    groups, start = [], 0
    for size in sizes:
        groups.append(ordered[start : start + size])
        start += size
    return groups


def class_incremental(
    dataset: TensorChunk,
    class_groups: Sequence[Sequence[int]] | None = None,
    with_task_ids: bool = False,
    *,
    num_chunks: int | None = None,
    seed: int | None = None,
) -> list[TensorChunk]:
    """One chunk per class group, each holding every sample of its classes, in dataset order.

    Give the groups, or ``num_chunks`` to split the dataset's classes into that many groups
    (shuffled by ``seed`` when given, see :func:`group_classes`). With ``with_task_ids`` each chunk
    also yields its group's index as the task id (for task-incremental training and evaluation).
    """
    if (class_groups is None) == (num_chunks is None):
        raise ValueError("pass either class_groups or num_chunks")
    if class_groups is None:
        assert num_chunks is not None  # exactly one of the two is given (checked above)
        class_groups = group_classes(torch.unique(dataset.targets).tolist(), num_chunks, seed)
    seen: set[int] = set()
    chunks = []
    for task, group in enumerate(class_groups):
        group = [int(c) for c in group]
        if not group:
            raise ValueError(f"class group {task} is empty")
        overlap = seen.intersection(group)
        if overlap:
            raise ValueError(f"classes {sorted(overlap)} appear in more than one class group")
        seen.update(group)
        mask = torch.isin(dataset.targets, torch.tensor(group, dtype=dataset.targets.dtype))
        index = mask.nonzero().squeeze(1)
        if index.numel() == 0:
            raise ValueError(f"class group {task} {group} has no samples in the dataset")
        chunk = dataset.subset(index)
        chunks.append(_with_task(chunk, task) if with_task_ids else chunk)
    return chunks


def task_incremental(
    dataset: TensorChunk,
    class_groups: Sequence[Sequence[int]] | None = None,
    *,
    num_chunks: int | None = None,
    seed: int | None = None,
) -> list[TensorChunk]:
    """Class-incremental chunks that carry their task id, for a model with one head per task
    (:class:`retentive.models.MultiHeadClassifier`) trained and evaluated with the task known."""
    return class_incremental(dataset, class_groups, with_task_ids=True, num_chunks=num_chunks, seed=seed)


def split_mnist(dataset: TensorChunk, with_task_ids: bool = False) -> list[TensorChunk]:
    """Split-MNIST: five chunks of two digits each, (0, 1), (2, 3), ..., (8, 9)."""
    return class_incremental(dataset, SPLIT_MNIST_CLASSES, with_task_ids=with_task_ids)


def seq_cifar10(dataset: TensorChunk, with_task_ids: bool = False) -> list[TensorChunk]:
    """Seq-CIFAR-10: five chunks of two classes each, (0, 1), (2, 3), ..., (8, 9), as in the DER
    paper; with ``with_task_ids`` each chunk carries its task id (task-IL)."""
    return class_incremental(dataset, SEQ_CIFAR10_CLASSES, with_task_ids=with_task_ids)


def iid_chunks(dataset: TensorChunk, num_chunks: int, seed: int = 0, with_task_ids: bool = False) -> list[TensorChunk]:
    """``num_chunks`` disjoint chunks of a random split: more data of the same distribution each
    time (the common production case). Sizes differ by at most one sample."""
    _check_chunks(num_chunks, len(dataset), "samples")
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(dataset), generator=g)
    chunks = [dataset.subset(part) for part in torch.tensor_split(order, num_chunks)]
    return [_with_task(c, i) for i, c in enumerate(chunks)] if with_task_ids else chunks


def data_incremental(
    dataset: TensorChunk, keys: Tensor, order: Sequence[int] | None = None, with_task_ids: bool = False
) -> list[TensorChunk]:
    """One chunk per value of a per-sample key (a collection date, a source, a domain), in
    ascending key order or the given ``order``; samples keep their dataset order within a chunk."""
    keys = torch.as_tensor(keys)
    if keys.shape != (len(dataset),):
        raise ValueError(f"need one key per sample ({len(dataset)}), got keys of shape {tuple(keys.shape)}")
    if keys.dtype.is_floating_point:
        raise ValueError(f"keys must be integers (bin a continuous score with rank_bins), got {keys.dtype}")
    values = torch.unique(keys).tolist()
    if order is None:
        order = values
    order = [int(v) for v in order]
    if sorted(order) != values:
        raise ValueError(f"order {order} must list each key value exactly once; the keys are {values}")
    chunks = [dataset.subset((keys == value).nonzero().squeeze(1)) for value in order]
    return [_with_task(c, i) for i, c in enumerate(chunks)] if with_task_ids else chunks


def rank_bins(score: Tensor, num_bins: int) -> Tensor:
    """Bin index per sample by the rank of ``score``: ``num_bins`` near-equal bins, lowest scores
    in bin 0 (ties broken by position). Feed it to :func:`data_incremental` for a gradual shift."""
    score = torch.as_tensor(score)
    if score.dim() != 1:
        raise ValueError(f"score must be 1-d (one value per sample), got shape {tuple(score.shape)}")
    _check_chunks(num_bins, score.shape[0], "samples")
    order = torch.sort(score, stable=True).indices
    bins = torch.empty(score.shape[0], dtype=torch.long)
    for b, part in enumerate(torch.tensor_split(order, num_bins)):
        bins[part] = b
    return bins


def subsample(chunk: TensorChunk, n: int | None, seed: int = 0) -> TensorChunk:
    """At most ``n`` samples of ``chunk`` drawn without replacement (``None``: the whole chunk),
    kept in their original order."""
    if n is None or n >= len(chunk):
        return chunk
    if n < 1:
        raise ValueError(f"a subsample needs n >= 1, got {n}")
    g = torch.Generator().manual_seed(int(seed))
    index = torch.randperm(len(chunk), generator=g)[:n].sort().values
    return chunk.subset(index)


def concatenate(chunks: Sequence[TensorChunk]) -> TensorChunk:
    """All samples of ``chunks`` in one chunk (task ids kept when every chunk has them)."""
    if len(chunks) == 0:
        raise ValueError("nothing to concatenate")
    task_ids = None
    if all(c.task_ids is not None for c in chunks):
        task_ids = torch.cat([c.task_ids for c in chunks])  # type: ignore[misc]
    return TensorChunk(torch.cat([c.inputs for c in chunks]), torch.cat([c.targets for c in chunks]), task_ids)
