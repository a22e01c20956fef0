"""Data-parallel ranks simulated by threads, for testing collective code without a process group."""

from __future__ import annotations

import threading

import torch

from retentive.memory.exchange import Exchange


class ThreadGather:
    """An all-gather between threads: like the real one, it refuses tensors of unequal shapes."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.barrier = threading.Barrier(world_size)
        self.slots: list[torch.Tensor | None] = [None] * world_size
        self.calls = 0

    def for_rank(self, rank: int):
        def gather(tensor: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = tensor.clone()
            self.barrier.wait()
            shapes = {tuple(t.shape) for t in self.slots}
            out = torch.stack(self.slots) if len(shapes) == 1 else None
            if rank == 0:
                self.calls += 1
            self.barrier.wait()
            if out is None:
                raise RuntimeError(f"all_gather of unequal shapes {shapes}")
            return out

        return gather


def run_ranks(world_size: int, work) -> list:
    """Run ``work(rank, exchange)`` in one thread per rank; re-raise the first failure."""
    gather = ThreadGather(world_size)
    results: list = [None] * world_size
    errors: list[BaseException] = []

    def target(rank: int) -> None:
        try:
            results[rank] = work(rank, Exchange(rank, world_size, gather.for_rank(rank)))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
            gather.barrier.abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results
