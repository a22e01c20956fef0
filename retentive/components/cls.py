"""CLS-ER's consistency term (Arani et al., ICLR 2022), as Renate's CLS-ER uses it.

Two exponential moving averages of the model act as teachers: a plastic one updated often and a
stable one updated rarely. After each optimizer step, with probability ``p`` each, a teacher is
updated with ``decay = min(1 - 1/(t + 1), w)`` (``t`` counts steps over all updates):

    ema <- decay * ema + (1 - decay) * param

On a memory batch, each sample takes its target logits from the teacher whose softmax gives the
true class the higher probability (the plastic one on ties), and the term is
``mean((f(x_m) - z_teacher)^2)`` (weighted by ``beta`` in the Learner).

The teachers are submodules of this component, so they move with ``.to()`` (Renate never moved
them to the device), save in the state folder with the step counter, and are never trained by
the optimizer (their parameters do not require gradients and are not the model's). Their
forward passes run in eval mode; their buffers (e.g. batch-norm statistics) are copied from the
model at each teacher update rather than averaged.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retentive.components.base import Component, StepContext, UpdateContext
from retentive.components.distillation import detached_copy


def ema_decay(step: int, weight: float) -> float:
    """The EMA decay at step ``step`` (1-based): ``min(1 - 1/(step + 1), weight)``."""
    return min(1.0 - 1.0 / (step + 1), weight)


@torch.no_grad()
def _ema_tensors_(
    ema: list[Tensor], source: list[Tensor], ema_buffers: list[Tensor], buffers: list[Tensor], decay: float
) -> None:
    if ema:
        torch._foreach_lerp_(ema, source, 1.0 - decay)  # ema + (1-decay)*(p - ema)
    for ema_buffer, buffer in zip(ema_buffers, buffers):
        ema_buffer.copy_(buffer)


#: a teacher's parameters, the model's (detached), the teacher's buffers, the model's
_Pairs = tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]


def _pairs(ema: nn.Module, model: nn.Module) -> _Pairs:
    ema_params: list[Tensor] = list(ema.parameters())
    params = list(model.parameters())
    if len(ema_params) != len(params):
        raise ValueError(f"the teacher has {len(ema_params)} parameters but the model {len(params)}")
    mismatched = [i for i, (e, p) in enumerate(zip(ema_params, params)) if e.shape != p.shape or e.dtype != p.dtype]
    if mismatched:
        raise ValueError(f"teacher and model parameters {mismatched} differ in shape or dtype")
    return ema_params, [p.detach() for p in params], list(ema.buffers()), list(model.buffers())


def ema_update_(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay*ema + (1-decay)*model`` for every parameter; buffers are copied."""
    _ema_tensors_(*_pairs(ema, model), decay)


def select_teacher_logits(plastic_logits: Tensor, stable_logits: Tensor, targets: Tensor) -> Tensor:
    """Per sample, the logits of the teacher with the higher softmax probability on the true class."""
    index = targets.long().unsqueeze(1)
    plastic = plastic_logits.softmax(dim=-1).gather(1, index)
    stable = stable_logits.softmax(dim=-1).gather(1, index)
    return torch.where(stable > plastic, stable_logits, plastic_logits)


class CLSConsistency(Component):
    """The consistency term of CLS-ER with its plastic and stable EMA teachers.

    Args:
        weight: ``beta``, the weight of the consistency MSE.
        model: the model being trained; each teacher starts as a copy of it.
        stable_model_update_weight: the stable teacher's largest EMA decay [0.999].
        plastic_model_update_weight: the plastic teacher's largest EMA decay [0.999].
        stable_model_update_probability: chance of updating the stable teacher after a step [0.7].
        plastic_model_update_probability: chance of updating the plastic teacher after a step [0.9].
    """

    #: buffers (add_state / register_buffer), declared for the type checker
    iteration: Tensor

    def __init__(
        self,
        weight: float,
        model: nn.Module,
        stable_model_update_weight: float = 0.999,
        plastic_model_update_weight: float = 0.999,
        stable_model_update_probability: float = 0.7,
        plastic_model_update_probability: float = 0.9,
    ) -> None:
        super().__init__(weight)
        for name, value in (
            ("stable_model_update_weight", stable_model_update_weight),
            ("plastic_model_update_weight", plastic_model_update_weight),
            ("stable_model_update_probability", stable_model_update_probability),
            ("plastic_model_update_probability", plastic_model_update_probability),
        ):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if not plastic_model_update_probability > stable_model_update_probability:
            raise ValueError(
                "the plastic teacher must be updated more often than the stable one: "
                f"plastic_model_update_probability={plastic_model_update_probability} must exceed "
                f"stable_model_update_probability={stable_model_update_probability}"
            )
        if not plastic_model_update_weight <= stable_model_update_weight:
            raise ValueError(
                f"plastic_model_update_weight={plastic_model_update_weight} must not exceed "
                f"stable_model_update_weight={stable_model_update_weight}"
            )
        self.stable_model_update_weight = float(stable_model_update_weight)
        self.plastic_model_update_weight = float(plastic_model_update_weight)
        self.stable_model_update_probability = float(stable_model_update_probability)
        self.plastic_model_update_probability = float(plastic_model_update_probability)
        self.plastic_model = detached_copy(model)
        self.stable_model = detached_copy(model)
        self.add_state("iteration", torch.tensor(0, dtype=torch.int64))
        self._cache: dict[str, _Pairs] = {}
        self._step: int | None = None  # a host copy of `iteration`: no device sync per step

    def _teachers_to_eval(self) -> None:
        # Switched lazily at the first step of a fit and back at its end: Lightning warns about
        # modules found in eval mode when a fit starts, and toggling at every step costs time.
        if self.plastic_model.training or self.stable_model.training:
            self.plastic_model.eval()
            self.stable_model.eval()

    def loss(self, ctx: StepContext) -> Tensor | None:
        if ctx.memory is None or ctx.memory_outputs is None:
            return None
        self._teachers_to_eval()
        inputs = ctx.memory_inputs if ctx.memory_inputs is not None else ctx.memory.inputs
        with torch.no_grad():
            target = select_teacher_logits(
                self.plastic_model(inputs), self.stable_model(inputs), ctx.memory.targets
            ).to(ctx.memory_outputs.dtype)
        return F.mse_loss(ctx.memory_outputs, target)

    def on_update_start(self, ctx: UpdateContext) -> None:
        # Parameter lists are fixed for the length of a fit; build them once, not every step.
        self._cache = {
            "plastic": _pairs(self.plastic_model, ctx.model),
            "stable": _pairs(self.stable_model, ctx.model),
        }
        self._step = int(self.iteration)

    def on_after_step(self, ctx: StepContext) -> None:
        self.iteration.add_(1)
        self._step = (int(self.iteration) - 1 if self._step is None else self._step) + 1
        step = self._step
        # coin flips from the component stream's Python RNG: no tensor is read back per step
        rng = ctx.rng if ctx.rng is not None else random
        draws = (rng.random(), rng.random())
        for name, draw, probability, weight in (
            ("plastic", draws[0], self.plastic_model_update_probability, self.plastic_model_update_weight),
            ("stable", draws[1], self.stable_model_update_probability, self.stable_model_update_weight),
        ):
            if draw < probability:
                pairs = self._cache.get(name) or _pairs(getattr(self, f"{name}_model"), ctx.model)
                _ema_tensors_(*pairs, ema_decay(step, weight))

    def on_update_end(self, ctx: UpdateContext) -> None:
        self._cache = {}
        self._step = None
        self.plastic_model.train(ctx.model.training)
        self.stable_model.train(ctx.model.training)

    def extra_repr(self) -> str:
        return (
            f"weight={self.weight}, plastic=(w={self.plastic_model_update_weight}, "
            f"p={self.plastic_model_update_probability}), stable=(w={self.stable_model_update_weight}, "
            f"p={self.stable_model_update_probability})"
        )
