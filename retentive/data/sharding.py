"""Batches for data-parallel ranks: each epoch's samples are used once, split across the ranks.

Lightning's default under DDP (a ``DistributedSampler``) pads the epoch by repeating whole
batches when their number does not divide by the number of ranks; repeated samples would be
offered to the replay memory twice. Here one shuffled order is drawn per epoch with a generator
that every rank seeds alike, and step ``s`` takes the next ``world_size * batch_size`` samples,
``batch_size`` for each rank, so ``world_size`` ranks at batch ``B`` see what one process at
batch ``world_size * B`` would. The last step splits what is left as evenly as possible (its
batches may differ in size by one); only when fewer samples are left than there are ranks does a
rank repeat one of the epoch's first samples, so every rank has a batch at every step.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ShardedBatchSampler(Sampler[list[int]]):
    """Yields this rank's batches (lists of indices) of each epoch.

    Args:
        num_samples: the dataset's length.
        batch_size: samples per rank per step.
        rank, world_size: this rank and the number of data-parallel ranks.
        shuffle: draw a new order each epoch (else dataset order).
        generator: the order's generator; seed it the same on every rank.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        rank: int,
        world_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        step = self.world_size * self.batch_size
        return -(-self.num_samples // step)

    def __iter__(self) -> Iterator[list[int]]:
        n, ranks, step = self.num_samples, self.world_size, self.world_size * self.batch_size
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, step):
            chunk = order[start : start + step]
            if chunk.numel() < ranks:  # too few left for one each: repeat the epoch's first samples
                chunk = torch.cat([chunk, order[: ranks - chunk.numel()]])
            # rank r takes the r-th of world_size nearly equal, contiguous parts
            base, extra = divmod(chunk.numel(), ranks)
            begin = self.rank * base + min(self.rank, extra)
            yield chunk[begin : begin + base + (1 if self.rank < extra else 0)].tolist()
