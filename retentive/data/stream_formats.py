"""Thin adapters from the formats large data is kept in to a stream of ``(x, y[, task_id])``.

Each adapter yields the format's samples in the source's order, whole: the update's reader
(:class:`retentive.data.streaming.StreamChunk`) keeps its share by rank and worker, so the
format's own node and worker splitting is turned off (both at once would drop samples).

- WebDataset tar shards (``pip install retentive[streaming]``): :class:`WebDatasetChunk`.
- Hugging Face ``datasets`` in streaming mode: :class:`HFStreamChunk`.

Both take local paths; ``s3://`` and other URLs go through the format's own readers (WebDataset:
``pipe:`` commands; ``datasets``: fsspec with ``storage_options``). Not litdata: it needs
torchvision, whose only build for this torch (CUDA on PyPI) cannot be imported beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset


def as_tensor(value: Any) -> Tensor:
    """A sample's field as a tensor: arrays, PIL images (H x W [x C], uint8) and numbers alike;
    raw bytes (a field no decoder knows, e.g. ``.u8``) as a flat uint8 tensor."""
    if torch.is_tensor(value):
        return value
    if isinstance(value, bytes):
        return torch.frombuffer(bytearray(value), dtype=torch.uint8)
    return torch.from_numpy(np.array(value))


class _FormatChunk(IterableDataset):
    """What the adapters share: the fields read, the declared length, and the mapping of one record
    to a sample (the arguments of both adapters; the field names default to the format's own)."""

    default_x = default_y = ""

    def __init__(
        self,
        x: str | None = None,
        y: str | None = None,
        task_id: str | None = None,
        length: int | None = None,
        transform: Callable[[Tensor], Any] | None = None,
    ) -> None:
        self.x, self.y, self.task_id_key = x or self.default_x, y or self.default_y, task_id
        self.length, self.transform = length, transform

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("this stream does not declare its length")
        return self.length

    def sample(self, record: dict[str, Any]) -> tuple[Any, ...]:
        missing = [k for k in (self.x, self.y, self.task_id_key) if k is not None and k not in record]
        if missing:
            raise KeyError(f"the record has no field {missing[0]!r} (it has {sorted(record)})")
        x = as_tensor(record[self.x])
        x = self.transform(x) if self.transform is not None else x
        y = int(as_tensor(record[self.y]))
        if self.task_id_key is None:
            return x, y
        return x, y, int(as_tensor(record[self.task_id_key]))


class WebDatasetChunk(_FormatChunk):
    """Samples from WebDataset tar shards: ``x`` and ``y`` name the files of a sample by extension.

    Args:
        urls: shard paths or URLs, or a brace pattern (``"data/shard-{000000..000099}.tar"``).
        x, y, task_id (keyword-only, as are the rest): the extensions holding the input (``.npy`` decodes to an array, ``.png`` or
            ``.jpg`` to a uint8 H x W x C image, an unknown one such as ``.u8`` stays raw bytes, read
            as a flat uint8 tensor: the cheapest to read), the label (``.cls``: an integer) and
            optionally the task id.
        length: the samples the shards hold, if known: the update then shows its progress and
            refuses shards that end early.
        transform: applied to each input tensor (e.g. ``lambda x: x.permute(2, 0, 1)``).
    """

    default_x, default_y = "input.npy", "cls"

    def __init__(self, urls: str | Sequence[str], **fields: Any) -> None:
        super().__init__(**fields)
        self.source = urls if isinstance(urls, str) else list(urls)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        import webdataset as wds  # type: ignore[import-untyped]

        pipeline = wds.WebDataset(
            self.source,
            shardshuffle=False,  # the update's reader shuffles, seeded
            nodesplitter=None,  # the update's reader keeps its share of the samples
            workersplitter=None,
            empty_check=False,
        ).decode("rgb8")
        for record in pipeline:
            yield self.sample(record)


class HFStreamChunk(_FormatChunk):
    """Samples from a Hugging Face ``datasets.IterableDataset`` (``load_dataset(..., streaming=True)``).

    Args:
        dataset: the streaming dataset.
        x, y, task_id (keyword-only, as are the rest): the columns read (``image`` and ``label`` by default).
        length: the samples it holds, if known (a streaming dataset's ``info.splits`` may say).
        transform: applied to each input tensor.
    """

    default_x, default_y = "image", "label"

    def __init__(self, dataset: Any, **fields: Any) -> None:
        super().__init__(**fields)
        self.dataset = dataset
        self.source = (
            type(dataset).__name__,
            getattr(dataset, "config_name", None),
            str(getattr(dataset, "split", "")),
        )

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        # iterated in batches, not through its own ``__iter__``: that one splits by DataLoader
        # worker, which would drop samples under the update's own split
        for batch in self.dataset.iter(batch_size=256):
            for index in range(len(batch[self.y])):
                yield self.sample({key: column[index] for key, column in batch.items()})
