"""Chunks that stream: an ``IterableDataset`` read once per epoch, each reader keeping its share.

A stream cannot be indexed, so an update reads it as it comes. Every reader (one per data-parallel
rank and DataLoader worker) walks the whole source and keeps every ``readers``-th sample, so each
sample is trained on once per epoch across ranks x workers whatever the source (no cooperation
from it needed). Under data parallelism every rank must take the same number of steps (else the
gradient all-reduce waits forever): the last round of samples is completed by repeating the
stream's first ones, at most ``world_size - 1`` of them, as ``DistributedSampler`` pads.

Each reader shuffles its share in a window of ``buffer`` samples, seeded from the loader's
generator once per epoch (:class:`StreamLoader`), so the order is the same for the same seed and
a resumed update continues the generator where the interrupted one left it.

A source that declares a length (``len()``) is held to it: a stream that ends early (or runs
long) is a :class:`~retentive.errors.DataError` naming both counts, and so is an empty one or one
whose reading fails (a corrupt shard), raised from the reader so the update rolls back.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any, TypeGuard

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from retentive.errors import DataError

#: samples each reader shuffles among (3x32x32 uint8 images: about 30 MB)
SHUFFLE_BUFFER = 10_000


def is_stream(dataset: object) -> TypeGuard[IterableDataset]:
    """Whether ``dataset`` is read as a stream (an ``IterableDataset``), not indexed."""
    return isinstance(dataset, IterableDataset)


def declared_length(dataset: object) -> int | None:
    """The number of samples ``dataset`` says it holds, or ``None`` when it does not say."""
    try:
        return int(len(dataset))  # type: ignore[arg-type]
    except (TypeError, NotImplementedError):
        return None


def chunk_length(dataset: object, feature: str) -> int:
    """``len(dataset)``; for a stream that does not declare one, the clear error naming ``feature``."""
    length = declared_length(dataset)
    if length is None:
        raise DataError(f"{feature} needs the chunk's number of samples, but the stream does not declare a len()")
    return length


def first_sample(dataset: Dataset, role: str = "training") -> Any:
    """The first sample: ``dataset[0]``, or for a stream the first one it yields (opening it once)."""
    if not is_stream(dataset):
        return dataset[0]
    try:
        return next(iter(dataset))
    except StopIteration:
        raise DataError(f"the {role} stream is empty; an update needs at least one sample") from None
    except DataError:
        raise
    except Exception as error:
        raise DataError(
            f"reading the {role} stream failed at its first sample: {type(error).__name__}: {error}"
        ) from error


def refuse_stream(dataset: object, feature: str, instead: str = "") -> None:
    """Raise the one clear error for a feature that needs to index the chunk, given a stream."""
    if is_stream(dataset):
        hint = f"; {instead}" if instead else ""
        raise DataError(f"{feature} needs a map-style chunk (indexable, with a length), not a stream{hint}")


class StreamChunk(IterableDataset):
    """One reader's share of ``source`` per epoch: ``(x, y[, task_id])`` samples in a seeded order.

    ``rank``/``world_size`` are the data-parallel ranks; the DataLoader workers are found from
    inside each worker. ``shuffle=False`` keeps the source's order within the share (validation).
    """

    def __init__(
        self,
        source: Dataset,
        shuffle: bool,
        rank: int = 0,
        world_size: int = 1,
        buffer: int = SHUFFLE_BUFFER,
        role: str = "training",
    ) -> None:
        self.source, self.shuffle, self.rank, self.world_size = source, shuffle, rank, world_size
        self.buffer, self.role = max(1, int(buffer)), role
        self.declared = declared_length(source)
        self.epoch_seed = 0  # set by StreamLoader before each epoch's iterator

    def share_length(self) -> int | None:
        """Samples this rank reads per epoch (the padded share), when the source declares its length."""
        if self.declared is None:
            return None
        return -(-self.declared // self.world_size)

    def __len__(self) -> int:
        length = self.share_length()
        if length is None:  # Lightning then counts the epoch's steps as it goes
            raise TypeError(f"the {self.role} stream does not declare its length")
        return length

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = self._share(worker, workers)
        if not self.shuffle:
            yield from mine
            return
        reader = self.rank * workers + worker
        key = f"{self.epoch_seed}:{reader}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
        window: list[Any] = []
        for sample in mine:
            if len(window) < self.buffer:
                window.append(sample)
                continue
            slot = rng.randrange(len(window))
            window[slot], sample = sample, window[slot]
            yield sample
        rng.shuffle(window)
        yield from window

    def _share(self, worker: int, workers: int) -> Iterator[Any]:
        """Sample ``i`` goes to rank ``i % world_size``, then to worker ``(i // world_size) % workers``."""
        world = self.world_size
        first: list[Any] = []  # the first round, repeated to pad the last one under data parallelism
        count = 0
        for count, sample in enumerate(self._read(), start=1):
            index = count - 1
            if index < world:
                first.append(sample)
            if index % world == self.rank and (index // world) % workers == worker:
                yield sample
        self._check_count(count)
        for index in range(count, -(-count // world) * world):
            if index % world == self.rank and (index // world) % workers == worker:
                yield first[index - count]

    def _read(self) -> Iterator[Any]:
        """The source's samples, each failure of the source turned into one clear DataError."""
        count = 0
        iterator = iter(self.source)
        while True:
            try:
                sample = next(iterator)
            except StopIteration:
                return
            except DataError:
                raise
            except Exception as error:
                raise DataError(
                    f"reading the {self.role} stream failed after {count} samples (a corrupt or unreadable "
                    f"shard?): {type(error).__name__}: {error}"
                ) from error
            count += 1
            yield sample

    def _check_count(self, count: int) -> None:
        if count == 0:
            raise DataError(f"the {self.role} stream is empty; an update needs at least one sample")
        if self.declared is not None and count != self.declared:
            side = "ended early" if count < self.declared else "ran past its end"
            raise DataError(
                f"the {self.role} stream {side}: it yielded {count} samples but declares {self.declared} (its len())"
            )


class StreamLoader(DataLoader):
    """The DataLoader of a :class:`StreamChunk`: each epoch's shuffle seed drawn from ``generator``
    (which a resume checkpoint saves), and the exact number of batches when the length is known."""

    dataset: StreamChunk

    def __iter__(self) -> Any:
        generator = self.generator if self.generator is not None else torch.default_generator
        self.dataset.epoch_seed = int(torch.randint(2**62, (1,), generator=generator))
        return super().__iter__()

    def __len__(self) -> int:
        share = len(self.dataset)  # TypeError without a declared length: Lightning counts as it goes
        batch = self.batch_size or 1
        workers = max(1, self.num_workers)
        # worker k reads the share's samples j with j % workers == k, and batches them on its own
        return sum(-(-((share - k + workers - 1) // workers) // batch) for k in range(workers))
