"""The update-level life cycle of the Learner: what runs at the start and end of a fit and of
each epoch, and the context those hooks get (a mixin of :class:`~retentive.learner.Learner`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from torch import Tensor
from torch.optim.lr_scheduler import LRScheduler

from retentive.components.base import Batch, UpdateContext
from retentive.data import nested
from retentive.distributed import broadcast_buffers
from retentive.learner.transforms import apply_transform
from retentive.models.routing import forward_routed
from retentive.models.taps import FeatureTaps
from retentive.streams import Purpose, stream_seed

ChunkBatches = Callable[[int], Iterator[Batch]]

if TYPE_CHECKING:  # the Learner's attributes, for the type checker (see retentive.learner.host)
    from retentive.learner.host import LearnerHost as _Host
else:
    _Host = object


class LifecycleMixin(_Host):
    """``begin_update``, the update context, and the fit- and epoch-level hooks."""

    def begin_update(self, seed: int, update: int, task_id: int | str, chunk: ChunkBatches | None) -> None:
        """Set the update's task, its component streams and the chunk update-level hooks iterate.

        Called by the updater before the fit (a resume checkpoint restored during the fit then
        overrides the generator states with those it saved).
        """
        self.seed, self.update_index, self.task_id, self._chunk = int(seed), int(update), task_id, chunk
        self.inserted_slots: list[Tensor] = []
        self.generator.manual_seed(stream_seed(self.seed, self.update_index, Purpose.COMPONENTS))
        self.rng.seed(stream_seed(self.seed, self.update_index, Purpose.COMPONENT_COINS))

    def update_context(self, epoch: int | None = None) -> UpdateContext:
        """The context of the update-level hooks (and of update-end selection)."""
        rank, world_size = self._ranks()
        return UpdateContext(
            model=self.model,
            memory=self.memory,
            task_id=self.task_id,  # type: ignore[arg-type]
            update=self.update_index,
            device=self.device,
            loss_fn=self.loss_fn,
            batch_size=max(1, self.memory_batch_size, 256),
            rank=rank,
            world_size=world_size,
            generator=self.generator,
            rng=self.rng,
            epoch=epoch,
            _chunk=self._chunk,
            _forward=self._forward_eval,
            all_reduce_mean=self._all_reduce_mean,
            memory_keys=self.memory_keys,
        )

    def _forward_eval(self, inputs: Any, task_ids: Tensor) -> Tensor:
        inputs = apply_transform(self.transforms["test"][0], nested.to(inputs, self.device), "test_transform")
        return forward_routed(self.model, inputs, task_ids.to(self.device))

    def on_fit_start(self) -> None:
        self.memory.to(self.device)
        self.epoch_metrics.reset()
        self._seen_at_fit_start = self.memory.seen
        self._start_distributed_fit()
        for component in self.components:
            component.init_parameter_state(self.model)
            component.to(self.device)
        if self.feature_layers:
            self._taps = FeatureTaps(self.model, self.feature_layers)
        self.checks.reset(self.device, self.total_steps)
        with self._component_rng(-1):
            ctx = self.update_context()
            for component in self.components:
                component.on_update_start(ctx)

    def on_fit_end(self) -> None:
        self.checks.raise_if_failed(self.task_id)
        self._log_last_losses()
        if self._exchange is not None:  # update-end passes see rank 0's batch-norm statistics everywhere
            broadcast_buffers([self.model])
        with self._component_rng(-2):
            ctx = self.update_context()
            for component in self.components:
                component.on_update_end(ctx)
            if self.memory.takes_samples:  # update-end selection (herding, k-center, ...), inside the replica check
                self.memory.policy.on_update_end(ctx)
        if self._taps is not None:
            self._taps.remove()
            self._taps = None
        if self._exchange is not None:
            self._end_distributed_fit(self._exchange)

    def on_train_epoch_end(self) -> None:
        self.checks.raise_if_failed(self.task_id)
        scheduler = self._scheduler()
        if scheduler is not None and self.scheduler_interval == "epoch":
            scheduler.step()
        self.epoch_metrics.log_train(self)
        with self._component_rng(-3 - self.current_epoch):
            ctx = self.update_context(epoch=self.current_epoch)
            for component in self.components:
                component.on_train_epoch_end(ctx)
            if self.memory.takes_samples:  # a policy that evaluates per epoch (forgetting counts)
                self.memory.policy.on_train_epoch_end(ctx)

    def _scheduler(self) -> LRScheduler | None:
        """The learning-rate scheduler, if any (``configure_optimizers`` returns at most one)."""
        return cast("LRScheduler | None", self.lr_schedulers())
