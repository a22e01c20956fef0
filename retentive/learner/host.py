"""What the Learner's mixins read from the Learner, declared once for the type checker.

The Learner is one LightningModule split over files: :mod:`~retentive.learner.lifecycle`,
:mod:`~retentive.learner.replicas`, :mod:`~retentive.learner.validation` and
:mod:`~retentive.learner.state` each hold a mixin that uses the Learner's attributes and the other
mixins' methods. Each mixin inherits :class:`LearnerHost` only under ``TYPE_CHECKING``; at runtime
they derive from ``object`` and the Learner's method resolution order is unchanged. Nothing here
runs: ``import retentive.learner.host`` defines no names but ``ComponentList``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager
    from typing import Any

    import pytorch_lightning as pl
    import torch
    from torch import Tensor

    from retentive.components.base import Component
    from retentive.learner.checks import StepChecks
    from retentive.learner.lifecycle import ChunkBatches
    from retentive.learner.metrics import EpochMetrics
    from retentive.learner.transforms import Transform
    from retentive.memory.exchange import Exchange
    from retentive.memory.protocol import ReplayMemory
    from retentive.models.taps import FeatureTaps

    class ComponentList(nn.ModuleList):
        """``nn.ModuleList`` whose items the type checker knows to be Components."""

        def __iter__(self) -> Iterator[Component]: ...

    class LearnerHost(pl.LightningModule):
        """The Learner's attributes (set in ``Learner.__init__``) and the methods one mixin calls
        on another; ``pl.LightningModule`` supplies ``device``, ``trainer``, ``log`` and the rest."""

        model: nn.Module
        loss_fn: Callable[[Tensor, Tensor], Tensor]
        components: ComponentList
        memory: ReplayMemory
        memory_batch_size: int
        memory_keys: tuple[str, ...]
        transforms: dict[str, tuple[Transform | None, Transform | None]]
        scheduler_interval: str
        epoch_metrics: EpochMetrics
        total_steps: int
        task_id: int | str
        update_index: int
        seed: int
        feature_layers: tuple[str, ...]
        generator: torch.Generator
        rng: random.Random
        checks: StepChecks
        inserted_slots: list[Tensor]
        _chunk: ChunkBatches | None
        _taps: FeatureTaps | None
        _exchange: Exchange | None
        _shared_seed: int | None
        _seen_at_fit_start: int

        def _unpack(self, batch: Any) -> tuple[Any, Tensor, Tensor]: ...
        def _log_last_losses(self) -> None: ...
        def _ranks(self) -> tuple[int, int]: ...
        def _start_distributed_fit(self) -> None: ...
        def _end_distributed_fit(self, exchange: Exchange) -> None: ...
        def _all_reduce_mean(self, tensor: Tensor) -> Tensor: ...
        def _component_rng(self, step: int) -> AbstractContextManager[None]: ...
        def extra_state(self) -> dict[str, Any]: ...
else:
    ComponentList = nn.ModuleList
