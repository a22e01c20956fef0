"""Training loaders: the data order of an update, its sharding, and the fast path for tensor chunks."""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import Any, cast

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from retentive.data.sharding import ShardedBatchSampler
from retentive.data.streaming import StreamChunk, StreamLoader, is_stream
from retentive.errors import DataError


def training_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """The loader of one update's chunk: ``batch_size`` new samples a step, shuffled by ``seed``.

    The loader keeps its generator (``loader.generator``), which a resume checkpoint saves and
    restores. Datasets that support batch indexing (:class:`~retentive.data.TensorChunk`) are read
    one indexing operation per batch instead of per-sample fetches and a collate; under data
    parallelism each rank gets its own share of every step, no sample repeated. A ``collate_fn``
    (Renate's ``train_dataset_collate_fn``) merges the samples of each batch, so it turns the
    batch-indexing fast path off. ``pin_memory`` pins each batch so that its copy to a GPU runs
    without a host sync (:func:`retentive.data.transfer.pins_batches` says when). A stream (an
    ``IterableDataset``) is read once per epoch, sharded by rank and worker
    (:mod:`retentive.data.streaming`).
    """
    if is_stream(dataset):
        if collate_fn is not None:
            raise DataError("a collate_fn needs a map-style chunk, not a stream; map the stream's samples instead")
        # workers are not kept between epochs: each epoch's seed (StreamLoader) reaches them as they start
        chunk = StreamChunk(dataset, shuffle, rank, world_size)
        generator = torch.Generator().manual_seed(seed)
        return StreamLoader(chunk, batch_size, generator=generator, num_workers=num_workers, pin_memory=pin_memory)
    generator = torch.Generator().manual_seed(seed)
    if world_size > 1:
        # each rank its own share of every step, no sample repeated (retentive.data.sharding)
        batches = ShardedBatchSampler(len(dataset), batch_size, rank, world_size, shuffle, generator)  # type: ignore[arg-type]
        by_index = getattr(dataset, "supports_batch_indexing", False) and collate_fn is None
        return DataLoader(
            dataset,
            sampler=batches if by_index else None,
            batch_sampler=None if by_index else batches,
            batch_size=None if by_index else 1,
            generator=generator,  # the sampler's: a resume checkpoint saves and restores it
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=pin_memory,
            collate_fn=collate_fn,  # None: DataLoader's default collate
        )
    if getattr(dataset, "supports_batch_indexing", False) and collate_fn is None:
        # One indexing op per batch instead of per-sample fetches and a collate.
        sized = cast(Sized, dataset)  # a batch-indexing dataset has a length
        order = RandomSampler(sized, generator=generator) if shuffle else SequentialSampler(sized)
        return DataLoader(
            dataset,
            sampler=BatchSampler(order, batch_size=batch_size, drop_last=False),
            batch_size=None,
            generator=generator,  # the sampler's: a resume checkpoint saves and restores it
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=pin_memory,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        collate_fn=collate_fn,  # None: DataLoader's default collate
    )
