"""The Learner: one training step of continual learning, as a LightningModule.

Per step: draw a memory batch, run ONE forward pass over new and memory samples together, combine
the task loss on the new samples with each component's weighted term, and after the optimizer
step offer the new samples (with the metadata the components asked for) to the memory. The
Learner knows nothing of files: the updater loads and saves its state.

The step drives its optimizer itself (Lightning's manual optimisation): Lightning's closure
machinery costs more per step than a small model's whole forward and backward. A learning-rate
scheduler is therefore stepped once per epoch, by the Learner.

Under data parallelism (``Trainer(strategy="ddp", devices=N)``) every rank keeps an identical
replica of the memory: the ranks exchange their new samples after each step
(:mod:`retentive.memory.exchange`), replay disjoint shares of one memory draw, run component hooks
under a shared RNG, and check at the end of the fit that their replicas agree
(:mod:`retentive.distributed`). See docs/ddp.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from retentive.components.base import Component, StepContext
from retentive.distributed import all_gather_stacked, broadcast_buffers, check_identical, mix_seed, shared_rng
from retentive.errors import DataError, NonFiniteLossError
from retentive.memory.buffer import ReplayBuffer
from retentive.memory.exchange import Exchange, Refresh, distributed_add
from retentive.models.routing import forward_routed, takes_task_ids
from retentive.models.taps import FeatureTaps

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]

FEATURE_PREFIX = "features."


def normalized_total(
    loss_weight: float, new_loss: Tensor, terms: Sequence[tuple[float, Tensor]], normalize: bool
) -> Tensor:
    """Renate's total: ``(w*L_new + sum c_i) / (w + sum weight_i)`` over the terms present.

    Each ``c_i`` already carries its weight; terms absent this step (``None``) are not passed, so
    the first chunk, with an empty memory, trains on exactly ``L_new``.
    """
    total = loss_weight * new_loss
    for _, term in terms:
        total = total + term
    if not normalize:
        return total
    denominator = loss_weight + sum(weight for weight, _ in terms)
    return total / denominator if denominator > 0 else total


class Learner(pl.LightningModule):
    """Trains ``model`` on new batches plus replayed memory under weighted loss components.

    Args:
        model: any module returning logits.
        loss_fn: task loss on (logits, targets), e.g. ``nn.CrossEntropyLoss()``.
        optimizer: callable taking the parameters and returning an optimizer.
        components: the weighted loss terms.
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
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        optimizer: OptimizerFactory,
        components: Sequence[Component] = (),
        memory: ReplayBuffer | None = None,
        memory_batch_size: int = 0,
        loss_weight: float = 1.0,
        loss_normalization: bool = True,
        ema_memory_update_gamma: float = 1.0,
        mask_unused_classes: bool = False,
        lr_scheduler: SchedulerFactory | None = None,
        log_every_n_steps: int = 50,
        update_memory_every_step: bool = True,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False  # see the module docstring
        if not 0.0 <= ema_memory_update_gamma <= 1.0:
            raise ValueError(f"ema_memory_update_gamma must lie in [0, 1], got {ema_memory_update_gamma}")
        if loss_weight < 0:
            raise ValueError(f"loss_weight must be >= 0, got {loss_weight}")
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.components = nn.ModuleList(components)
        self.memory = memory if memory is not None else ReplayBuffer(0)
        self.memory_batch_size = int(memory_batch_size)
        self.loss_weight = float(loss_weight)
        self.loss_normalization = loss_normalization
        self.ema_memory_update_gamma = float(ema_memory_update_gamma)
        self.mask_unused_classes = mask_unused_classes
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        self.update_memory_every_step = bool(update_memory_every_step)
        self.total_steps = 0
        self.task_id = 0
        self.chunk_classes: Tensor | None = None
        self.memory_keys = tuple(dict.fromkeys(k for c in components for k in c.memory_keys))
        self.feature_layers = tuple(
            k[len(FEATURE_PREFIX) :] for k in self.memory_keys if k.startswith(FEATURE_PREFIX)
        ) + tuple(layer for c in components for layer in getattr(c, "feature_layers", ()))
        self.feature_layers = tuple(dict.fromkeys(self.feature_layers))
        self._taps: FeatureTaps | None = None
        self._val_correct = 0
        self._val_total = 0
        self._exchange: Exchange | None = None  # set for the length of a data-parallel fit
        self._shared_seed: int | None = None
        self._seen_at_fit_start = 0

    # ---------------------------------------------------------------- setup and hooks
    def set_chunk_classes(self, classes: Tensor | None) -> None:
        """The classes present in the current chunk, for ``mask_unused_classes``."""
        self.chunk_classes = None if classes is None else classes.long()

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must build a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}

    def on_fit_start(self) -> None:
        self.memory.to(self.device)
        self._seen_at_fit_start = self.memory.seen
        self._exchange, self._shared_seed = None, None
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            strategy = trainer.strategy
            gather = all_gather_stacked if torch.distributed.is_initialized() else strategy.all_gather
            self._exchange = Exchange(trainer.global_rank, trainer.world_size, gather, self.device)
            self._shared_seed = int(strategy.broadcast(torch.initial_seed(), src=0))
        if self.feature_layers:
            self._taps = FeatureTaps(self.model, self.feature_layers)
        with self._component_rng(-1):
            for component in self.components:
                component.on_update_start(self)

    def on_fit_end(self) -> None:
        with self._component_rng(-2):
            for component in self.components:
                component.on_update_end(self)
        if self._taps is not None:
            self._taps.remove()
            self._taps = None
        if self._exchange is not None:
            self._end_distributed_fit(self._exchange)

    @contextmanager
    def _component_rng(self, step: int) -> Iterator[None]:
        """Under data parallelism, component hooks draw from an RNG seeded alike on every rank."""
        seed = None if self._shared_seed is None else mix_seed(self._shared_seed, step)
        with shared_rng(seed, self.device):
            yield

    def _end_distributed_fit(self, exchange: Exchange) -> None:
        """Agree on the memory's count, take rank 0's buffers, then check the replicas are equal."""
        strategy = self.trainer.strategy
        if self.memory.capacity == 0:  # counted locally during the fit (no per-step exchange)
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

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    # ---------------------------------------------------------------- the step
    def _unpack(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise DataError(
                f"a training batch must be (inputs, targets) or (inputs, targets, task_ids), got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            )
        x, y = batch[0], batch[1]
        if not torch.is_tensor(y) or y.dtype.is_floating_point or y.dim() != 1:
            raise DataError(
                f"targets must be a 1-d integer tensor of class indices, got "
                f"{getattr(y, 'dtype', type(y).__name__)} of shape {tuple(getattr(y, 'shape', ()))}"
            )
        t = batch[2] if len(batch) == 3 else torch.full_like(y, self.task_id)
        return x, y.long(), t.long()

    def _check_targets(self, y: Tensor, num_outputs: int) -> None:
        bad = (y < 0) | (y >= num_outputs)
        if bool(bad.any()):
            raise DataError(
                f"label {int(y[bad][0])} is outside the model's {num_outputs} outputs "
                f"(expected 0..{num_outputs - 1})"
            )

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss, ctx = self.step_loss(batch)
        self.manual_backward(loss)
        optimizer.step()
        self.after_step(ctx)
        # Lightning hands this to every callback's on_train_batch_end as ``outputs``.
        return {"loss": loss.detach(), "losses": {name: value.detach() for name, value in ctx.losses.items()}}

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def step_loss(self, batch: Any) -> tuple[Tensor, StepContext]:
        """The total loss of one step, and the context the after-step work reads."""
        x, y, t = self._unpack(batch)
        n = x.shape[0]
        rank, world_size = (0, 1) if self._exchange is None else (self._exchange.rank, self._exchange.world_size)
        memory = self.memory.sample(self.memory_batch_size, rank, world_size) if self.memory_batch_size else None
        if memory is not None and memory.inputs.shape[1:] != x.shape[1:]:
            raise DataError(
                f"new inputs have shape {tuple(x.shape[1:])} but the memory holds {tuple(memory.inputs.shape[1:])}"
            )
        inputs = x if memory is None else torch.cat([x, memory.inputs.to(x.dtype)])
        routes = None
        if takes_task_ids(self.model):  # a multi-head model: memory samples go to their own task's head
            routes = t if memory is None else torch.cat([t, memory.task_ids.to(t.device).long()])
        outputs = forward_routed(self.model, inputs, routes)
        self._check_targets(y, outputs.shape[-1])
        features = self._taps.outputs if self._taps is not None else {}
        ctx = StepContext(
            inputs=x,
            targets=y,
            task_ids=t,
            outputs=outputs[:n],
            loss_fn=self.loss_fn,
            model=self.model,
            step=self.total_steps,
            features={k: v[:n] for k, v in features.items()},
            memory=memory,
            memory_outputs=None if memory is None else outputs[n:],
            memory_features={} if memory is None else {k: v[n:] for k, v in features.items()},
        )
        new_logits = ctx.outputs
        if self.mask_unused_classes and self.chunk_classes is not None:
            keep = torch.zeros(new_logits.shape[-1], dtype=torch.bool, device=new_logits.device)
            keep[self.chunk_classes.to(new_logits.device)] = True
            new_logits = new_logits.masked_fill(~keep, torch.finfo(new_logits.dtype).min)
        new_loss = self.loss_fn(new_logits, y)
        terms: list[tuple[float, Tensor]] = []
        named = ctx.losses
        named["loss/new"] = new_loss
        for i, component in enumerate(self.components):
            term = component.loss(ctx)
            if term is not None:
                terms.append((component.weight, term))
                named[f"loss/{i}_{type(component).__name__}"] = term
        total = normalized_total(self.loss_weight, new_loss, terms, self.loss_normalization)
        if not bool(torch.isfinite(total)):
            raise NonFiniteLossError(
                f"the training loss became {float(total.detach())} at step {self.total_steps} (task {self.task_id}); "
                "the update was stopped and nothing was written"
            )
        named["loss/total"] = total
        if (self.total_steps + 1) % self.log_every_n_steps == 0:
            self._log_training({k: float(v.detach()) for k, v in named.items()})
        return total, ctx

    def after_step(self, ctx: StepContext) -> None:
        """After the optimizer step: offer the new samples to memory, then the component hooks."""
        self._store(ctx)
        with self._component_rng(self.total_steps):
            for component in self.components:
                component.on_after_step(ctx)
        self.total_steps += 1

    def _metadata(self, outputs: Tensor, features: dict[str, Tensor]) -> dict[str, Tensor]:
        meta: dict[str, Tensor] = {}
        for key in self.memory_keys:
            if key == "logits":
                meta[key] = outputs.detach().float()
            elif key.startswith(FEATURE_PREFIX):
                meta[key] = features[key[len(FEATURE_PREFIX) :]].detach().float()
            else:
                raise KeyError(f"no metadata producer for memory key {key!r}; expected 'logits' or 'features.<layer>'")
        return meta

    def _store(self, ctx: StepContext) -> None:
        """Offer the new samples to memory; EMA-refresh the metadata of the samples replayed."""
        if not self.update_memory_every_step:
            return
        if self.memory.capacity == 0:
            self.memory.seen += int(ctx.inputs.shape[0])
            return
        batch = {"inputs": ctx.inputs.detach(), "targets": ctx.targets, "task_ids": ctx.task_ids}
        batch.update(self._metadata(ctx.outputs, ctx.features))
        refresh = None
        if ctx.memory is not None and self.ema_memory_update_gamma < 1.0 and ctx.memory_outputs is not None:
            fresh = self._metadata(ctx.memory_outputs, ctx.memory_features)
            refresh = Refresh(ctx.memory.indices, fresh, self.ema_memory_update_gamma)
        if self._exchange is not None:  # every replica takes every rank's refresh and samples
            distributed_add(self.memory, batch, self._exchange, refresh)
            return
        if refresh is not None:
            for key, value in refresh.values.items():
                self.memory.refresh(refresh.indices, key, value, refresh.gamma)
        self.memory.add(batch)

    def _log_training(self, metrics: dict[str, float]) -> None:
        if self.logger is None:
            return
        optimizer = self.trainer.optimizers[0] if self.trainer.optimizers else None
        if optimizer is not None:
            metrics["lr"] = float(optimizer.param_groups[0]["lr"])
        metrics["memory/size"] = float(len(self.memory))
        self.logger.log_metrics(metrics, step=self.total_steps + 1)

    # ---------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val_correct = 0
        self._val_total = 0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y, t = self._unpack(batch)
        predictions = forward_routed(self.model, x, t).argmax(dim=-1)
        self._val_correct += int((predictions == y).sum())
        self._val_total += int(y.numel())

    def on_validation_epoch_end(self) -> None:
        if self._trainer is not None and self.trainer.world_size > 1:  # each rank validated its shard
            counts = torch.tensor([self._val_correct, self._val_total], dtype=torch.int64, device=self.device)
            self._val_correct, self._val_total = self.trainer.strategy.reduce(counts, reduce_op="sum").tolist()
        if self._val_total and self.logger is not None:
            accuracy = self._val_correct / self._val_total
            self.logger.log_metrics({"val/accuracy": accuracy}, step=self.total_steps)

    # ---------------------------------------------------------------- state
    def extra_state(self) -> dict[str, Any]:
        """Counters and component state: everything but the model weights and the memory."""
        return {
            "total_steps": self.total_steps,
            "components": [c.state_dict() for c in self.components],
            "component_types": [type(c).__name__ for c in self.components],
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        types = [type(c).__name__ for c in self.components]
        if list(state["component_types"]) != types:
            raise ValueError(f"the state holds components {state['component_types']} but the learner has {types}")
        self.total_steps = int(state["total_steps"])
        for component, component_state in zip(self.components, state["components"]):
            component.load_state_dict(component_state)
