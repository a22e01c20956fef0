"""A memory that keeps every sample offered: the joint-training baseline's store of all data seen.

Same tensors-per-key storage and state format as :class:`ReplayBuffer`; the capacity grows (by
doubling) instead of samples being replaced, and the storage grows with it as it fills, so
appending stays amortised O(1) per sample.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from retentive.memory.backends import DEFAULT_BACKEND
from retentive.memory.buffer import ReplayBuffer
from retentive.memory.protocol import Offer, SlotPolicy


class AppendPolicy(SlotPolicy):
    """Write incoming samples to the slots after the last filled one (the buffer makes room first)."""

    name = "append"

    def place(self, offer: Offer) -> tuple[Tensor, Tensor]:
        n, size, capacity = offer.n, offer.size, offer.capacity
        if size + n > capacity:
            raise ValueError(f"append needs {size + n} slots but the memory has {capacity}")
        return torch.arange(n, dtype=torch.int64), torch.arange(size, size + n, dtype=torch.int64)


class UnboundedBuffer(ReplayBuffer):
    """Keeps everything it is offered, in arrival order.

    Args:
        seed: seeds the sampler, as for :class:`ReplayBuffer`.
        backend, directory: where the rows reside, as for :class:`ReplayBuffer`.
    """

    def __init__(
        self, seed: int = 0, backend: str = DEFAULT_BACKEND, directory: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(0, policy=AppendPolicy(), seed=seed, backend=backend, directory=directory)

    @property
    def takes_samples(self) -> bool:
        """Always: the capacity grows with what is offered."""
        return True

    def _reserve(self, needed: int) -> None:
        """Raise the capacity (doubling) to hold ``needed`` samples; the storage itself grows as it
        fills, like any :class:`ReplayBuffer`'s."""
        if needed <= self.capacity:
            return
        self.capacity = max(needed, 2 * self.capacity)

    def add(self, batch: Mapping[str, Any]) -> Tensor:
        batch = self.identify(batch)
        n = self.prepare(batch)[1]
        if n == 0:
            return torch.empty(0, dtype=torch.int64)
        self._reserve(self.size + n)
        return super().add(batch)

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Any saved capacity fits: the buffer takes the saved one."""
        self.capacity = int(state["capacity"])  # type: ignore[call-overload]
        super().load_state_dict(state)
