"""The replay memory under data parallelism: every rank keeps an identical replica.

After each step each rank has its own new batch. Inserting only those would leave each rank a
sample of its own shard (and Renate saved only rank 0's). Instead the ranks agree on the
*union* of the step's batches, in rank order, and every replica applies the same insertion:

1. one all-gather of a small header per rank: its batch size, its bytes per stored row and a
   checksum of its row layout (the replicas must store the same keys, input leaves, shapes and
   dtypes), its count of replayed samples, and whether its batch fits its memory (a batch that
   does not is refused on every rank at once, before anything is written);
2. (only for a policy that reads the targets) one all-gather of the targets;
3. every rank runs the policy on the union with the buffer's generator, whose state is the same
   everywhere, so every rank computes the same ``(source, slots)``;
4. one all-gather of the rows that were accepted, packed as bytes, each rank sending only its
   own accepted rows (padded to the largest count); none at all when no rank's row was accepted.

Nested inputs travel as their storage keys (one per leaf, ``inputs.input_ids``, see
:mod:`retentive.memory.layout`): each leaf is its own column range of the packed rows, so a
dict of token ids and masks costs the same single all-gather as one image tensor.

This is the reservoir over the stream "rank 0's batch, rank 1's batch, ..." step after step: the
memory is a uniform sample of everything every rank saw, the same in distribution as one process
with the ranks' batches together would keep. Uneven last batches are allowed: the header carries
each rank's count, and padding rows are never read. Once the memory is full only a fraction
``capacity / seen`` of the samples is accepted, so the traffic shrinks as training goes on.

The EMA refresh of replayed metadata (``ema_memory_update_gamma < 1``) is exchanged the same
way: every replica applies every rank's refresh, in rank order, before the insert, as one process
refreshes before it inserts.

The functions take a ``gather`` callable (a tensor in, the stacked ``(world_size, ...)`` tensors
of all ranks out, as Lightning's ``strategy.all_gather``) so that this module needs no process
group and its tests can simulate ranks with threads.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from retentive.errors import MemoryShapeError
from retentive.memory.buffer import ReplayBuffer
from retentive.memory.identity import ID_KEY, ROW_KEY
from retentive.memory.protocol import ReplayMemory

Gather = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Exchange:
    """Where this replica sits among the data-parallel ranks, and how they gather tensors."""

    rank: int
    world_size: int
    gather: Gather
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must lie in [0, world_size={self.world_size}), got {self.rank}")


@dataclass(frozen=True)
class Refresh:
    """This rank's EMA refresh of replayed metadata: slots and fresh values per key."""

    indices: Tensor
    values: dict[str, Tensor]
    gamma: float


def _row_layout(rows: Mapping[str, Tensor]) -> list[tuple[str, torch.Size, torch.dtype, int]]:
    """``(key, per-row shape, dtype, bytes per row)`` in a fixed key order."""
    return [
        (key, rows[key].shape[1:], rows[key].dtype, _numel(rows[key].shape[1:]) * rows[key].element_size())
        for key in sorted(rows)
    ]


def _numel(shape: torch.Size) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _layout_checksum(memory: ReplayBuffer) -> int:
    """A number that differs between replicas storing other keys, leaves, shapes or dtypes."""
    text = repr(sorted((key, tuple(v.shape[1:]), str(v.dtype)) for key, v in memory.storage.items()))
    return zlib.crc32(text.encode())


def pack(rows: Mapping[str, Tensor], count: int, device: torch.device) -> Tensor:
    """Rows of several keys and dtypes as one ``(count, bytes)`` uint8 tensor, zero-padded."""
    layout = _row_layout(rows)
    width = sum(nbytes for *_, nbytes in layout)
    packed = torch.zeros((count, width), dtype=torch.uint8, device=device)
    start = 0
    for key, shape, _, nbytes in layout:
        value = rows[key]
        k = int(value.shape[0])
        if k:
            packed[:k, start : start + nbytes] = (
                value.detach().reshape(k, _numel(shape)).contiguous().view(torch.uint8).to(device)
            )
        start += nbytes
    return packed


def unpack(packed: Tensor, layout: list[tuple[str, torch.Size, torch.dtype, int]]) -> dict[str, Tensor]:
    """The inverse of :func:`pack` for ``layout``."""
    k = int(packed.shape[0])
    rows, start = {}, 0
    for key, shape, dtype, nbytes in layout:
        # a fresh (k, nbytes) tensor: offset 0 and row stride nbytes, whatever the column range and
        # k (``.contiguous()`` keeps a one-row slice's stride, which ``view(dtype)`` refuses)
        column = torch.empty((k, nbytes), dtype=torch.uint8, device=packed.device).copy_(
            packed[:, start : start + nbytes]
        )
        rows[key] = column.view(dtype).reshape(k, *shape)
        start += nbytes
    return rows


def _gather_rows(rows: dict[str, Tensor], counts: list[int], exchange: Exchange) -> list[dict[str, Tensor]]:
    """Every rank's rows (``counts[r]`` of them), via one all-gather of packed, padded bytes."""
    layout = _row_layout(rows)
    gathered = exchange.gather(pack(rows, max(counts), exchange.device))
    return [unpack(gathered[r, : counts[r]], layout) for r in range(exchange.world_size)]


def _owners(source: Tensor, offsets: Tensor) -> Tensor:
    """The rank that offered each union row in ``source``."""
    return torch.searchsorted(offsets[1:], source, right=True)


def distributed_add(
    memory: ReplayMemory, batch: Mapping[str, Any], exchange: Exchange, refresh: Refresh | None = None
) -> Tensor:
    """Offer every rank's ``batch`` to every replica (and apply every rank's ``refresh`` first).

    ``batch["inputs"]`` may be nested (a dict/tuple/list of tensors), as for
    :meth:`ReplayBuffer.add`. Every rank must call this at the same step. Returns the slots
    written, the same on all ranks. Only a sample memory (a :class:`ReplayBuffer`) has replicas
    that can agree sample by sample; another memory is refused on every rank, before any exchange.
    """
    if not isinstance(memory, ReplayBuffer):
        raise TypeError(
            f"{type(memory).__name__} cannot keep identical replicas under data parallelism (only a sample memory "
            "exchanges its rows); train it in one process"
        )
    flat, counts, refresh_counts = _agree(memory, batch, exchange, refresh)
    if memory.capacity == 0:
        memory.seen += sum(counts)
        return torch.empty(0, dtype=torch.int64)
    if refresh is not None and any(refresh_counts):
        _apply_refreshes(memory, refresh, refresh_counts, exchange)
    union_targets = None
    if memory.policy.uses_targets:
        local = {"targets": flat["targets"].detach().to(torch.int64)}
        union_targets = torch.cat([rows["targets"] for rows in _gather_rows(local, counts, exchange)]).cpu()
    total = sum(counts)
    source, slots = memory.choose_slots(total, union_targets)
    if slots.numel():
        _write_union(memory, flat, counts, source, slots, exchange)
    memory.seen += total
    return slots


def _agree(
    memory: ReplayBuffer, batch: Mapping[str, Any], exchange: Exchange, refresh: Refresh | None
) -> tuple[dict[str, Tensor], list[int], list[int]]:
    """Step 1: the headers. Returns this rank's flat rows, every rank's batch and refresh counts.

    A batch that does not fit is refused on every rank together: a rank raising alone would
    leave the others waiting in the next all-gather.
    """
    problem: MemoryShapeError | None = None
    numbered = ROW_KEY not in batch and memory.capacity > 0  # rows numbered here, in union order below
    given_ids = ID_KEY in batch
    start = memory.sources.next_row(memory.seen)
    if memory.capacity:
        batch = memory.identify(batch)  # every rank's rows carry their own ids into the union
    try:
        flat, n = memory.prepare(batch)
    except MemoryShapeError as error:
        problem, flat, n = error, {}, 0
    if problem is None and not memory.storage and memory.capacity:
        memory.allocate(batch)
    row_bytes = sum(_numel(stored.shape[1:]) * stored.element_size() for stored in memory.storage.values())
    n_refresh = 0 if refresh is None else int(refresh.indices.numel())
    header = [n, row_bytes, n_refresh, _layout_checksum(memory), int(problem is not None)]
    headers = exchange.gather(torch.tensor(header, dtype=torch.int64, device=exchange.device)).cpu()
    counts, widths, refresh_counts, layouts, refused = (headers[:, i].tolist() for i in range(5))
    if problem is not None:
        raise problem
    if any(refused):
        ranks = [r for r, bad in enumerate(refused) if bad]
        raise MemoryShapeError(
            f"rank(s) {ranks} offered samples that do not fit the memory (their error names the key)"
        )
    if numbered:  # this rank's samples take their place in the union's order
        rows = memory.sources.offered_rows(start, sum(counts[: exchange.rank]), n, sum(counts))
        identity = memory.chunk_identity(rows)
        flat.update({k: v.to(flat[k].device) for k, v in identity.items() if not (k == ID_KEY and given_ids)})
    if memory.capacity and (len(set(widths)) != 1 or len(set(layouts)) != 1):
        raise MemoryShapeError(
            f"the ranks' memories store rows of different sizes or layouts ({widths} bytes per rank, layout checksums "
            f"{layouts}); every rank must offer the same keys, input leaves, shapes and dtypes"
        )
    return flat, counts, refresh_counts


def _write_union(
    memory: ReplayBuffer, flat: dict[str, Tensor], counts: list[int], source: Tensor, slots: Tensor, exchange: Exchange
) -> None:
    """Step 4: gather the accepted rows (each rank sends its own) and write them to ``slots``."""
    offsets = torch.tensor([0, *counts], dtype=torch.int64).cumsum(0)
    owners = _owners(source, offsets)
    per_rank = torch.bincount(owners, minlength=exchange.world_size).tolist()
    mine = source[owners == exchange.rank] - offsets[exchange.rank]
    local_rows = memory.encode({key: value.detach()[mine.to(value.device)] for key, value in flat.items()})
    everyone = _gather_rows(local_rows, per_rank, exchange)
    # union row i came from rank owners[i] and is that rank's position-th accepted row
    position = torch.empty_like(source)
    for r in range(exchange.world_size):
        where = (owners == r).nonzero().squeeze(1)
        position[where] = torch.arange(where.numel())
    stacked = {key: torch.cat([rows[key] for rows in everyone]) for key in local_rows}
    start = torch.tensor([0, *per_rank], dtype=torch.int64).cumsum(0)
    order = (start[owners] + position).to(memory.device)
    memory.write({key: value.to(memory.device)[order] for key, value in stacked.items()}, slots)


def _apply_refreshes(memory: ReplayBuffer, refresh: Refresh, counts: list[int], exchange: Exchange) -> None:
    local = {"indices": refresh.indices.detach().to(torch.int64)}
    local.update({key: value.detach().to(memory.storage[key].dtype) for key, value in refresh.values.items()})
    for rows in _gather_rows(local, counts, exchange):
        indices = rows.pop("indices").to(memory.device)
        for key, value in rows.items():
            memory.refresh(indices, key, value.to(memory.device), refresh.gamma)
