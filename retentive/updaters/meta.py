"""Meta-learning methods that change the optimisation loop itself, each through its own Learner.

MER (Riemer et al., ICLR 2019), with Mammoth's parameters: every step makes ``batch_num``
SGD steps, each on the current batch joined with a fresh memory draw (one batch ``B_i`` of the
paper's Algorithm 1), each followed by the within-batch Reptile interpolation
``theta <- theta_i0 + beta * (theta - theta_i0)``; after the ``batch_num`` steps the across-batch
interpolation ``theta <- theta_A0 + gamma * (theta - theta_A0)``; then the current batch goes to
the reservoir memory. As in Mammoth, the loss of ``B_i`` is the mean task loss over its samples
(new and replayed together), and each ``B_i`` takes one optimizer step (Algorithm 1 steps
through ``B_i`` one sample at a time; Mammoth's batch step is what its published figures used).

Online meta-learning (a MAML-style inner loop, as La-MAML and OML adapt per batch): fast weights
``theta' = theta - inner_lr * grad L_cur(theta)``, ``inner_steps`` times on the current batch;
then the outer loss on the current plus memory samples at ``theta'`` is differentiated back to
``theta`` (through the inner steps, or first-order) and the optimizer steps ``theta``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.stateless import _reparametrize_module

from retentive.components.base import Component, StepContext, positive
from retentive.components.replay import MemoryCrossEntropy
from retentive.learner import Learner, OptimizerFactory
from retentive.learner.transforms import apply_transform
from retentive.models.routing import takes_task_ids
from retentive.updaters.arguments import check_count
from retentive.updaters.base import ModelUpdater
from retentive.updaters.settings import LossFunction, ReplaySettings

if TYPE_CHECKING:
    from pytorch_lightning.core.optimizer import LightningOptimizer
    from typing_extensions import Unpack  # typing.Unpack is Python 3.11+
else:
    from typing import Unpack


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def reptile_(params: list[nn.Parameter], start: list[Tensor], rate: float) -> None:
    """``theta <- start + rate * (theta - start)`` in place: Reptile's interpolation."""
    for parameter, origin in zip(params, start):
        parameter.copy_(origin + rate * (parameter - origin))


class MetaExperienceReplayLearner(Learner):
    """The Learner of MER: ``batch_num`` optimizer steps per step, with two Reptile interpolations."""

    def __init__(self, beta: float, gamma: float, batch_num: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta, self.gamma, self.batch_num = float(beta), float(gamma), int(batch_num)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        optimizer = cast("LightningOptimizer", self.optimizers())  # one optimizer
        params = _trainable(self.model)
        across_start = [p.detach().clone() for p in params]
        for _ in range(self.batch_num):
            within_start = [p.detach().clone() for p in params]
            optimizer.zero_grad()
            loss, ctx = self.step_loss(batch)  # a fresh memory draw joined with the current batch
            self.manual_backward(loss)
            with self._component_rng(self.total_steps):
                for component in self.components:
                    component.on_before_optimizer_step(ctx)
            optimizer.step()
            reptile_(params, within_start, self.beta)
        reptile_(params, across_start, self.gamma)
        self.after_step(ctx)  # the reservoir takes the current batch once
        return {"loss": loss.detach(), "losses": {name: value.detach() for name, value in ctx.losses.items()}}

    def _total(self, ctx: StepContext) -> Tensor:
        """The mean task loss over the batch ``B_i``: new and replayed samples alike."""
        total = super()._total(ctx)
        if ctx.memory is None or ctx.memory_outputs is None:
            return total
        n, m = int(ctx.targets.shape[0]), int(ctx.memory.targets.shape[0])
        memory_loss = ctx.task_loss(ctx.memory_outputs, ctx.memory.targets)
        union = (n * ctx.losses["loss/new"] + m * memory_loss) / (n + m)
        ctx.losses["loss/memory"] = memory_loss
        ctx.losses["loss/total"] = union
        return union


class MetaExperienceReplayModelUpdater(ModelUpdater):
    """MER: experience replay whose every step is a Reptile meta-update across memory draws.

    Mammoth's Seq-MNIST settings: ``batch_size=1``, ``memory_batch_size=128``, ``beta=1``,
    ``gamma=1``, ``batch_num=1``, SGD lr 0.1 (memory 200 and 500) or 0.03 (5120).

    Args:
        memory_size: the reservoir memory's capacity.
        beta: the within-batch meta learning rate [1].
        gamma: the across-batch meta learning rate [1].
        batch_num: batches ``B_i`` (each a fresh memory draw plus the current batch) per step [1].
        components: none may be given (MER's loss is its own); kept for the common signature.
        **kwargs: every :class:`~retentive.updaters.base.ModelUpdater` argument but ``components``
            (MER's loss is its own).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        beta: float = 1.0,
        gamma: float = 1.0,
        batch_num: int = 1,
        components: Sequence[Component] = (),
        **kwargs: Unpack[ReplaySettings],
    ) -> None:
        if components:
            raise ValueError("MetaExperienceReplayModelUpdater computes its own loss; it takes no components")
        beta, gamma = positive("beta", beta), positive("gamma", gamma)
        batch_num = check_count("batch_num", batch_num, 1)
        self._meta: dict[str, Any] = dict(beta=beta, gamma=gamma, batch_num=batch_num)
        super().__init__(model, loss_fn, optimizer, memory_size=memory_size, **kwargs)

    def build_learner(self, **settings: Any) -> Learner:
        return MetaExperienceReplayLearner(**self._meta, **settings)


class OnlineMetaLearner(Learner):
    """The Learner of online meta-learning: an inner loop on the current batch, an outer step on
    the current plus memory samples at the adapted weights."""

    def __init__(self, inner_lr: float, inner_steps: int, first_order: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inner_lr, self.inner_steps, self.first_order = float(inner_lr), int(inner_steps), bool(first_order)

    def fast_weights(self, batch: Any) -> dict[str, Tensor]:
        """``inner_steps`` SGD steps of ``inner_lr`` on the current (train-transformed) batch."""
        x, y, t = self._unpack(batch)
        transform, target_transform = self.transforms["train"]
        x = apply_transform(transform, x, "train_transform")
        y = apply_transform(target_transform, y, "train_target_transform")
        fast: dict[str, Tensor] = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        args = (x, t) if takes_task_ids(self.model) else (x,)
        for _ in range(self.inner_steps):
            loss = self._mean_loss(functional_call(self.model, fast, args, strict=False), y)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not self.first_order, allow_unused=True)
            fast = {
                name: w if g is None else w - self.inner_lr * (g.detach() if self.first_order else g)
                for (name, w), g in zip(fast.items(), grads)
            }
        return fast

    def _mean_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        values = self.loss_fn(logits, targets)
        return values if values.dim() == 0 else values.mean()

    @contextmanager
    def _at(self, weights: dict[str, Tensor]) -> Iterator[None]:
        with _reparametrize_module(self.model, weights):
            yield

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        optimizer = cast("LightningOptimizer", self.optimizers())  # one optimizer
        optimizer.zero_grad()
        fast = self.fast_weights(batch)
        with self._at(fast):
            loss, ctx = self.step_loss(batch)  # current + memory, at the adapted weights
        self.manual_backward(loss)  # back through the inner loop to the slow weights
        with self._component_rng(self.total_steps):
            for component in self.components:
                component.on_before_optimizer_step(ctx)
        optimizer.step()
        self.after_step(ctx)
        return {"loss": loss.detach(), "losses": {name: value.detach() for name, value in ctx.losses.items()}}


class OnlineMetaLearningModelUpdater(ModelUpdater):
    """Online meta-learning: MAML's inner loop on each current batch, then an outer ER update.

    Args:
        memory_size: the reservoir memory's capacity.
        inner_lr: the inner loop's SGD learning rate [0.1].
        inner_steps: inner SGD steps on the current batch, >= 1 [1].
        first_order: drop the second-order terms (first-order MAML) [False].
        alpha: weight of the memory cross-entropy in the outer loss [1].
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFunction,
        optimizer: OptimizerFactory,
        memory_size: int,
        inner_lr: float = 0.1,
        inner_steps: int = 1,
        first_order: bool = False,
        alpha: float = 1.0,
        components: Sequence[Component] = (),
        **kwargs: Unpack[ReplaySettings],
    ) -> None:
        hint = " (with no inner step this is plain experience replay: use ExperienceReplayModelUpdater)"
        check_count("inner_steps", inner_steps, 1, hint)
        inner_lr = positive("inner_lr", inner_lr)
        self._meta: dict[str, Any] = dict(inner_lr=inner_lr, inner_steps=inner_steps, first_order=bool(first_order))
        own = [MemoryCrossEntropy(alpha), *components]
        super().__init__(model, loss_fn, optimizer, own, memory_size, **kwargs)

    def build_learner(self, **settings: Any) -> Learner:
        return OnlineMetaLearner(**self._meta, **settings)
