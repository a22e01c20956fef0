"""Data-parallel replicas: the exchange, shared randomness and the end-of-fit agreement check.

Every rank keeps an identical replica of the memory and of component state. During a fit the
ranks exchange their new samples after each step (:mod:`retentive.memory.exchange`), component
hooks draw from a global RNG seeded alike on every rank, and at the end every rank takes rank 0's
buffers and checks that the replicas agree (:mod:`retentive.distributed`). See docs/how-to/ddp-and-gpus.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from retentive.distributed import all_gather_stacked, broadcast_buffers, check_identical, mix_seed, shared_rng
from retentive.memory.exchange import Exchange
from retentive.streams import Purpose, stream_seed

if TYPE_CHECKING:  # the Learner's attributes, for the type checker (see retentive.learner.host)
    from retentive.learner.host import LearnerHost as _Host
else:
    _Host = object


class ReplicaMixin(_Host):
    """The Learner's data-parallel side (a mixin of :class:`~retentive.learner.Learner`)."""

    _exchange: Exchange | None
    _shared_seed: int | None

    def _ranks(self) -> tuple[int, int]:
        return (0, 1) if self._exchange is None else (self._exchange.rank, self._exchange.world_size)

    def _start_distributed_fit(self) -> None:
        self._exchange, self._shared_seed = None, None
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            strategy = trainer.strategy
            gather = all_gather_stacked if torch.distributed.is_initialized() else strategy.all_gather
            self._exchange = Exchange(trainer.global_rank, trainer.world_size, gather, self.device)
            shared = stream_seed(self.seed, self.update_index, Purpose.SHARED)
            self._shared_seed = int(strategy.broadcast(shared, src=0))

    def _all_reduce_mean(self, tensor: Tensor) -> Tensor:
        if self._exchange is None:
            return tensor
        return self.trainer.strategy.reduce(tensor, reduce_op="mean")

    @contextmanager
    def _component_rng(self, step: int) -> Iterator[None]:
        """Under data parallelism, component hooks draw from a global RNG seeded alike on every rank."""
        seed = None if self._shared_seed is None else mix_seed(self._shared_seed, step)
        with shared_rng(seed, self.device):
            yield

    def _end_distributed_fit(self, exchange: Exchange) -> None:
        """Agree on the memory's count, take rank 0's buffers, then check the replicas are equal."""
        strategy = self.trainer.strategy
        if not self.memory.takes_samples:  # counted locally during the fit (no per-step exchange)
            local = torch.tensor(self.memory.seen - self._seen_at_fit_start, dtype=torch.int64, device=self.device)
            self.memory.seen = self._seen_at_fit_start + int(strategy.reduce(local, reduce_op="sum"))
        broadcast_buffers([self.model, self.components])
        check_identical(
            {
                "model": self.model.state_dict(),
                "component state": self.extra_state(),
                "memory": self.memory.state_dict(),
            },
            exchange.gather,
            self.device,
        )
        self._exchange = None
        self._shared_seed = None
