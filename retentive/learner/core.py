"""The Learner: one training step of continual learning, as a LightningModule.

One step, in order (DESIGN.md's data flow):

1. the new batch gets ``train_transform`` / ``train_target_transform``; a memory batch is drawn
   and gets ``buffer_transform`` / ``buffer_target_transform`` (generated replay, labelled by the
   classifier itself, only the first);
2. ONE forward pass over new and memory samples together;
3. the task loss on the new samples (``loss_fn`` mean- or un-reduced), each component's raw term
   times its weight, combined by Renate's normaliser (components with ``normalized = False`` are
   added after it);
4. backward; ``on_before_optimizer_step`` (gradients present: project, mask, record);
   the optimizer step;
5. the raw new samples (untransformed) and the metadata the components declared go to the
   memory; ``on_after_step``.

Update-level hooks (``on_update_start``, ``on_train_epoch_end``, ``on_update_end``) get an
:class:`~retentive.components.base.UpdateContext` that can iterate the chunk and the memory.

The step drives its optimizer itself (Lightning's manual optimisation): Lightning's closure
machinery costs more per step than a small model's whole forward and backward. It never waits on
the host: its checks accumulate as tensors (:mod:`retentive.learner.checks`) and are read when
losses are logged and at each epoch's end.

Under data parallelism every rank keeps an identical replica of the memory: the ranks exchange
their new samples after each step (:mod:`retentive.memory.exchange`), replay disjoint shares of
one memory draw, run component hooks under shared randomness, and check at the end of the fit
that their replicas agree (:mod:`retentive.distributed`). See docs/how-to/ddp-and-gpus.md.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import pytorch_lightning as pl
import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from torch import Tensor, nn

from retentive.components.base import Component, StepContext, reduce_task_loss
from retentive.data import nested
from retentive.errors import DataError
from retentive.learner.batches import unpack_batch
from retentive.learner.checks import StepChecks, check_settings
from retentive.learner.host import ComponentList
from retentive.learner.lifecycle import ChunkBatches, LifecycleMixin
from retentive.learner.losses import mask_logits, normalized_total, weighted_terms
from retentive.learner.metrics import EpochMetrics
from retentive.learner.replicas import ReplicaMixin
from retentive.learner.state import StateMixin
from retentive.learner.transforms import Transform, apply_transform
from retentive.learner.validation import ValidationMixin
from retentive.memory.buffer import ReplayBuffer
from retentive.memory.exchange import Exchange, Refresh, distributed_add
from retentive.memory.protocol import ReplayMemory
from retentive.models.routing import forward_routed, takes_task_ids
from retentive.models.taps import FeatureTaps

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class Learner(LifecycleMixin, ReplicaMixin, ValidationMixin, StateMixin, pl.LightningModule):
    """Trains ``model`` on new batches plus replayed memory under weighted components.

    Args:
        model: any module returning logits.
        loss_fn: task loss on (logits, targets), mean-reduced or per sample
            (``nn.CrossEntropyLoss(reduction="none")``, Renate's form).
        optimizer: callable taking the parameters and returning an optimizer.
        components: the loss terms and gradient rules.
        memory: the replay memory (may have capacity 0).
        memory_batch_size: memory samples drawn per step.
        loss_weight: the weight ``w`` of the new-data loss.
        loss_normalization: divide the total by the sum of the weights present (Renate's default).
        ema_memory_update_gamma: refresh stored metadata of replayed samples with
            ``m <- gamma*m + (1-gamma)*new``; 1 keeps the metadata stored at insertion.
        mask_unused_classes: in the new-data loss, mask the logits of classes absent from the
            current chunk (set with :meth:`set_chunk_classes`).
        lr_scheduler: optional callable building a scheduler from the optimizer.
        log_every_n_steps: how often the training losses go to the logger.
        update_memory_every_step: offer each new batch to the memory after its step (the online
            ER family); ``False`` leaves the memory to the updater (Offline-ER, GDumb, Joint).
        train_transform, train_target_transform: applied to each new batch.
        buffer_transform, buffer_target_transform: applied to each replayed batch (the second
            not to labels a model predicted, ``MemoryBatch.model_targets``).
        test_transform, test_target_transform: applied to validation batches and to the batches
            update-level hooks iterate.
        learning_rate_scheduler_interval: ``"epoch"`` [Renate's default] steps the scheduler after
            every epoch, ``"step"`` after every optimizer step (the Learner steps it itself: under
            manual optimisation Lightning does not).
        gradient_clip_val, gradient_clip_algorithm: clip the gradients after the components'
            ``on_before_optimizer_step`` and before the optimizer step (``"norm"`` [default] or
            ``"value"``), as Lightning's Trainer arguments of the same names would under automatic
            optimisation; ``None`` does not clip.
        logged_metrics: torchmetrics metrics of (logits, targets), logged per epoch as
            ``train_<name>`` and ``val_<name>`` (Renate's names).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        optimizer: OptimizerFactory,
        components: Sequence[Component] = (),
        memory: ReplayMemory | None = None,
        memory_batch_size: int = 0,
        loss_weight: float = 1.0,
        loss_normalization: bool = True,
        ema_memory_update_gamma: float = 1.0,
        mask_unused_classes: bool = False,
        lr_scheduler: SchedulerFactory | None = None,
        log_every_n_steps: int = 50,
        update_memory_every_step: bool = True,
        train_transform: Transform | None = None,
        train_target_transform: Transform | None = None,
        buffer_transform: Transform | None = None,
        buffer_target_transform: Transform | None = None,
        test_transform: Transform | None = None,
        test_target_transform: Transform | None = None,
        learning_rate_scheduler_interval: str = "epoch",
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
        logged_metrics: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_settings(
            learning_rate_scheduler_interval, gradient_clip_algorithm, gradient_clip_val, ema_memory_update_gamma
        )
        self.automatic_optimization = False  # see the module docstring
        if loss_weight < 0:
            raise ValueError(f"loss_weight must be >= 0, got {loss_weight}")
        for component in components:
            if not isinstance(component, Component):
                raise TypeError(f"components must be retentive Components, got {type(component).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.components = ComponentList(components)
        self.memory: ReplayMemory = memory if memory is not None else ReplayBuffer(0)
        self.memory_batch_size = int(memory_batch_size)
        self.loss_weight = float(loss_weight)
        self.loss_normalization = loss_normalization
        self.ema_memory_update_gamma = float(ema_memory_update_gamma)
        self.mask_unused_classes = mask_unused_classes
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        self.update_memory_every_step = bool(update_memory_every_step)
        self.transforms = {
            "train": (train_transform, train_target_transform),
            "buffer": (buffer_transform, buffer_target_transform),
            "test": (test_transform, test_target_transform),
        }
        self.scheduler_interval = learning_rate_scheduler_interval
        self.gradient_clip_val = None if gradient_clip_val is None else float(gradient_clip_val)
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self.epoch_metrics = EpochMetrics(logged_metrics)
        self.memory_classes_masked = True  # Renate's mask keeps the classes in memory too
        self.memory_keys = tuple(dict.fromkeys(k for c in components for k in c.memory_keys))
        self._producers = {key: next(c for c in components if key in c.memory_keys) for key in self.memory_keys}
        self.feature_layers = tuple(dict.fromkeys(layer for c in components for layer in c.feature_layers))
        self._init_running_state()

    def _init_running_state(self) -> None:
        """What the updates fill in as they run: counters, the current task, randomness, checks, fit-time hooks."""
        self.total_steps = 0
        self.task_id: int | str = 0
        self._identity: tuple[Tensor, ...] | None = None  # the step's rows and ids, when the loader gives them
        self.update_index = 0
        self.seed = 0
        self.chunk_classes: Tensor | None = None
        #: set by the updater when the chunk's labels could not be checked before training
        self.check_labels_per_step = True
        self.generator = torch.Generator()
        self.rng = random.Random(0)
        self.checks = StepChecks()
        self._chunk: ChunkBatches | None = None
        self._taps: FeatureTaps | None = None
        self._val_correct = 0
        self._val_total = 0
        self._exchange: Exchange | None = None  # set for the length of a data-parallel fit
        self._shared_seed: int | None = None
        self._seen_at_fit_start = 0
        self._last_losses: dict[str, Tensor] = {}
        #: the memory slots written by this update's steps (for an update-end metadata refresh)
        self.inserted_slots: list[Tensor] = []

    # ---------------------------------------------------------------- setup
    def set_chunk_classes(self, classes: Tensor | None) -> None:
        """The classes ``mask_unused_classes`` keeps: Renate's, those of the current chunk plus
        those present in the memory when the update starts."""
        if classes is not None and self.memory_classes_masked and len(self.memory):
            stored = self.memory.decoded("targets").to(classes.device)
            classes = torch.cat([classes.long(), stored.long()])
        self.chunk_classes = None if classes is None else torch.unique(classes.long())

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must build a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = {"scheduler": self.lr_scheduler_factory(optimizer), "interval": self.scheduler_interval}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def forward(self, x: Any) -> Tensor:
        return self.model(x)

    # ---------------------------------------------------------------- the step
    def _unpack(self, batch: Any) -> tuple[Any, Tensor, Tensor]:
        x, y, t, self._identity = unpack_batch(batch, self.task_id)  # identity: for the memory (_store)
        return x, y, t

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        optimizer = cast(LightningOptimizer, self.optimizers())  # configure_optimizers returns one
        optimizer.zero_grad()
        loss, ctx = self.step_loss(batch)
        self.manual_backward(loss)
        with self._component_rng(self.total_steps):
            for component in self.components:
                component.on_before_optimizer_step(ctx)
        if self.gradient_clip_val is not None:
            self.clip_gradients(  # a LightningOptimizer is an instance of the optimizer's class at runtime
                optimizer,  # type: ignore[arg-type]
                gradient_clip_val=self.gradient_clip_val,
                gradient_clip_algorithm=self.gradient_clip_algorithm,
            )
        optimizer.step()
        if self.scheduler_interval == "step":
            scheduler = self._scheduler()
            if scheduler is not None:
                scheduler.step()
        self.epoch_metrics.train_step(loss.detach(), ctx)
        self.after_step(ctx)
        # Lightning hands this to every callback's on_train_batch_end as ``outputs``.
        return {"loss": loss.detach(), "losses": {name: value.detach() for name, value in ctx.losses.items()}}

    def _draw_memory(self, x: Any) -> tuple[Any, Tensor | None, Any]:
        """A memory batch (or ``None``) and its transformed inputs and targets."""
        rank, world_size = self._ranks()
        memory = self.memory.sample(self.memory_batch_size, rank, world_size) if self.memory_batch_size else None
        if memory is None:
            return None, None, None
        stored, given = nested.flatten(memory.inputs), nested.flatten(x)
        if {k: v.shape[1:] for k, v in stored.items()} != {k: v.shape[1:] for k, v in given.items()}:
            raise DataError(f"new inputs have shape {_shapes(given)} but the memory holds {_shapes(stored)}")
        transform, target_transform = self.transforms["buffer"]
        inputs = apply_transform(transform, memory.inputs, "buffer_transform")
        targets = memory.targets
        if not memory.model_targets:  # a generated batch is labelled in the model's label space already
            targets = apply_transform(target_transform, targets, "buffer_target_transform")
        return memory, targets, inputs

    def step_loss(self, batch: Any) -> tuple[Tensor, StepContext]:
        """The total loss of one step, and the context the later hooks read."""
        raw_x, raw_y, t = self._unpack(batch)
        transform, target_transform = self.transforms["train"]
        x = apply_transform(transform, raw_x, "train_transform")
        y = apply_transform(target_transform, raw_y, "train_target_transform")
        n = int(y.shape[0])
        memory, memory_targets, memory_inputs = self._draw_memory(raw_x)
        if memory is None:
            inputs = x
        elif torch.is_tensor(x):
            inputs = torch.cat([x, memory_inputs.to(x.dtype)])
        else:
            inputs = nested.cat([x, memory_inputs])
        routes = None
        if takes_task_ids(self.model):  # a multi-head model: memory samples go to their own task's head
            routes = t if memory is None else torch.cat([t, memory.task_ids.to(t.device).long()])
        outputs = forward_routed(self.model, inputs, routes)
        if self.check_labels_per_step:
            y = self.checks.labels(y, outputs.shape[-1])
            if memory_targets is not None:  # a bad label stored by an earlier step, not yet reported
                memory_targets = self.checks.replayed_labels(memory_targets, outputs.shape[-1])
        features = self._taps.outputs if self._taps is not None else {}
        if memory is not None:
            memory.data["targets"] = memory_targets  # the components see the transformed targets
        rank, world_size = self._ranks()
        ctx = StepContext(
            inputs=x,
            targets=y,
            task_ids=t,
            outputs=outputs[:n],
            loss_fn=self._task_loss_fn(),
            model=self.model,
            step=self.total_steps,
            features={k: v[:n] for k, v in features.items()},
            memory=memory,
            memory_inputs=memory_inputs,
            memory_outputs=None if memory is None else outputs[n:],
            memory_features={} if memory is None else {k: v[n:] for k, v in features.items()},
            raw_inputs=raw_x,
            raw_targets=raw_y,
            generator=self.generator,
            rng=self.rng,
            rank=rank,
            world_size=world_size,
            all_reduce_mean=self._all_reduce_mean,
        )
        total = self._total(ctx)
        self.checks.loss(total)
        if (self.total_steps + 1) % self.log_every_n_steps == 0:
            self.checks.raise_if_failed(self.task_id)
            self._log_training({k: float(v.detach()) for k, v in ctx.losses.items()})
        else:
            self._last_losses = ctx.losses
        return total, ctx

    def _task_loss_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        """The loss the components' task-loss terms use (``ctx.task_loss``): with
        ``mask_unused_classes``, the memory logits are masked as the new ones are (Renate's rule);
        logit-matching terms (DER's MSE) read the unmasked logits."""
        if not (self.mask_unused_classes and self.chunk_classes is not None):
            return self.loss_fn
        classes, loss_fn = self.chunk_classes, self.loss_fn
        return lambda logits, targets: loss_fn(mask_logits(logits, classes), targets)

    def _total(self, ctx: StepContext) -> Tensor:
        """Task loss plus each component's raw term times its weight (normalised as Renate does)."""
        new_logits = ctx.outputs
        if self.mask_unused_classes and self.chunk_classes is not None:
            new_logits = mask_logits(new_logits, self.chunk_classes)
        new_loss, ctx.new_loss_per_sample = reduce_task_loss(
            self.loss_fn(new_logits, ctx.targets), ctx.targets.shape[0]
        )
        ctx.losses["loss/new"] = new_loss
        normalized, penalties = weighted_terms(self.components, ctx)
        total = normalized_total(self.loss_weight, new_loss, normalized, self.loss_normalization)
        for penalty in penalties:
            total = total + penalty
        ctx.losses["loss/total"] = total
        return total

    def after_step(self, ctx: StepContext) -> None:
        """After the optimizer step: offer the new samples to memory, then the component hooks."""
        self._store(ctx)
        with self._component_rng(self.total_steps):
            for component in self.components:
                component.on_after_step(ctx)
        self.total_steps += 1

    def metadata(self, outputs: Tensor, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """The memory metadata the components declared, each made by the component that needs it."""
        return {key: self._producers[key].metadata(key, outputs, features) for key in self.memory_keys}

    def _store(self, ctx: StepContext) -> None:
        """Offer the raw new samples to memory; EMA-refresh the metadata of the samples replayed."""
        if not self.update_memory_every_step:
            return
        if not self.memory.takes_samples:
            self.memory.seen += int(ctx.targets.shape[0])
            return
        batch = {"inputs": nested.detach(ctx.raw_inputs), "targets": ctx.raw_targets, "task_ids": ctx.task_ids}
        if self._identity is not None:  # else the memory credits the rows to its current source itself
            batch.update(sample_rows=self._identity[0], sample_ids=self._identity[1])
        batch.update(self.metadata(ctx.outputs, ctx.features))
        refresh = None
        if ctx.memory is not None and self.ema_memory_update_gamma < 1.0 and ctx.memory_outputs is not None:
            fresh = self.metadata(ctx.memory_outputs, ctx.memory_features)
            refresh = Refresh(ctx.memory.indices, fresh, self.ema_memory_update_gamma)
        if self._exchange is not None:  # every replica takes every rank's refresh and samples
            self.inserted_slots.append(distributed_add(self.memory, batch, self._exchange, refresh))
            return
        if refresh is not None:
            for key, value in refresh.values.items():
                self.memory.refresh(refresh.indices, key, value, refresh.gamma)
        self.inserted_slots.append(self.memory.add(batch))

    def _log_last_losses(self) -> None:
        """At the end of an update, the last step's losses (even for updates shorter than the interval)."""
        if self._last_losses and self.total_steps % self.log_every_n_steps != 0:
            self._log_training({k: float(v.detach()) for k, v in self._last_losses.items()}, step=self.total_steps)
        self._last_losses = {}

    def _log_training(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.logger is None:
            return
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        if optimizer is not None:
            metrics["lr"] = float(optimizer.param_groups[0]["lr"])
        metrics["memory/size"] = float(len(self.memory))
        self.logger.log_metrics(metrics, step=self.total_steps + 1 if step is None else step)


def _shapes(flat: dict[str, Tensor]) -> Any:
    if list(flat) == [""]:
        return tuple(flat[""].shape[1:])
    return {k: tuple(v.shape[1:]) for k, v in flat.items()}
