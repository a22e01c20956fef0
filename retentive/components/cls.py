"""CLS-ER's consistency term (Arani et al., ICLR 2022), as Renate's CLS-ER uses it.

Two exponential moving averages of the model act as teachers: a plastic one updated often and a
stable one updated rarely. After each optimizer step, with probability ``p`` each, a teacher is
updated with ``decay = min(1 - 1/(t + 1), w)`` (``t`` counts steps over all updates):

    ema <- decay * ema + (1 - decay) * param

On a memory batch, each sample takes its target logits from the teacher whose softmax gives the
true class the higher probability (the plastic one on ties), and the term is
``beta * mean((f(x_m) - z_teacher)^2)``.

The teachers are submodules of this component, so they move with ``.to()`` (Renate never moved
them to the device), save in the state folder with the step counter, and are never trained by
the optimizer (their parameters do not require gradients and are not the model's). Their
forward passes run in eval mode; their buffers (e.g. batch-norm statistics) are copied from the
model at each teacher update rather than averaged.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retentive.components.base import Component, StepContext


def ema_decay(step: int, weight: float) -> float:
    """The EMA decay at step ``step`` (1-based): ``min(1 - 1/(step + 1), weight)``."""
    return min(1.0 - 1.0 / (step + 1), weight)


@torch.no_grad()
def ema_update_(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay*ema + (1-decay)*model`` for every parameter; buffers are copied."""
    ema_params = list(ema.parameters())
    params = [p.detach().to(q.dtype) for p, q in zip(model.parameters(), ema_params)]
    if len(ema_params) != len(params):
        raise ValueError(f"the teacher has {len(ema_params)} parameters but the model {len(params)}")
    if ema_params:
        torch._foreach_mul_(ema_params, decay)
        torch._foreach_add_(ema_params, params, alpha=1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)


def select_teacher_logits(plastic_logits: Tensor, stable_logits: Tensor, targets: Tensor) -> Tensor:
    """Per sample, the logits of the teacher with the higher softmax probability on the true class."""
    index = targets.long().unsqueeze(1)
    plastic = plastic_logits.softmax(dim=-1).gather(1, index)
    stable = stable_logits.softmax(dim=-1).gather(1, index)
    return torch.where(stable > plastic, stable_logits, plastic_logits)


def _teacher(model: nn.Module) -> nn.Module:
    teacher = copy.deepcopy(model)
    for module in teacher.modules():
        # A deep copy shares the model's hook functions (e.g. feature taps); the teacher's forward
        # passes must not overwrite the features the learner captured from the model.
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def _eval_forward(model: nn.Module, inputs: Tensor) -> Tensor:
    """``model(inputs)`` in eval mode, leaving the mode as it was (Lightning warns about modules
    left in eval mode at fit start, so the teachers follow the learner's mode between calls)."""
    training = model.training
    model.train(False)
    try:
        return model(inputs)
    finally:
        model.train(training)


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
        self.plastic_model = _teacher(model)
        self.stable_model = _teacher(model)
        self.add_state("iteration", torch.tensor(0, dtype=torch.int64))

    def loss(self, ctx: StepContext) -> Tensor | None:
        if ctx.memory is None or ctx.memory_outputs is None:
            return None
        inputs = ctx.memory.inputs
        with torch.no_grad():
            target = select_teacher_logits(
                _eval_forward(self.plastic_model, inputs), _eval_forward(self.stable_model, inputs), ctx.memory.targets
            ).to(ctx.memory_outputs.dtype)
        return self.weight * F.mse_loss(ctx.memory_outputs, target)

    def on_after_step(self, ctx: StepContext) -> None:
        self.iteration += 1
        step = int(self.iteration)
        draws = torch.rand(2)
        if float(draws[0]) < self.plastic_model_update_probability:
            ema_update_(self.plastic_model, ctx.model, ema_decay(step, self.plastic_model_update_weight))
        if float(draws[1]) < self.stable_model_update_probability:
            ema_update_(self.stable_model, ctx.model, ema_decay(step, self.stable_model_update_weight))

    def extra_repr(self) -> str:
        return (
            f"weight={self.weight}, plastic=(w={self.plastic_model_update_weight}, "
            f"p={self.plastic_model_update_probability}), stable=(w={self.stable_model_update_weight}, "
            f"p={self.stable_model_update_probability})"
        )
