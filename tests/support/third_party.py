"""A component written outside the package, as a user would: it projects gradients in
``on_before_optimizer_step`` and keeps declared per-parameter state (a running mean of the
gradients), with a worker that runs one update in a fresh process.

Usage: python tests/support/third_party.py INPUT_STATE|- OUTPUT_STATE CHUNK_INDEX
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

import retentive as R
from retentive.components.base import Component, StepContext, UpdateContext
from retentive.data import TensorChunk
from retentive.models import MLP

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)


class GradientMomentumProjection(Component):
    """Removes from each gradient its component along the running mean of past gradients
    (a toy projection in the spirit of OGD), and counts the steps it acted on."""

    def __init__(self, decay: float = 0.9) -> None:
        super().__init__(weight=0.0)
        self.decay = decay
        self.add_state("mean_grad", per_parameter=True)
        self.add_state("projected_steps", torch.tensor(0, dtype=torch.int64))
        self.add_state("updates_seen", torch.tensor(0, dtype=torch.int64))

    def on_before_optimizer_step(self, ctx: StepContext) -> None:
        means = self.parameter_state("mean_grad", ctx.model)
        for name, parameter in ctx.model.named_parameters():
            if parameter.grad is None:
                continue
            mean, grad = means[name], parameter.grad
            norm = mean.pow(2).sum()
            coefficient = torch.where(norm > 0, (grad * mean).sum() / norm.clamp_min(1e-12), torch.zeros_like(norm))
            grad.sub_(coefficient * mean)
            mean.mul_(self.decay).add_(grad, alpha=1 - self.decay)
        self.projected_steps.add_(1)

    def on_update_end(self, ctx: UpdateContext) -> None:
        self.updates_seen.add_(1)


def chunks() -> list[TensorChunk]:
    """Two small, fixed chunks of 'MNIST-like' data (deterministic, no download)."""
    g = torch.Generator().manual_seed(5)
    out = []
    for i in range(2):
        x = torch.rand(96, 1, 28, 28, generator=g)
        y = torch.randint(2 * i, 2 * i + 2, (96,), generator=g)
        out.append(TensorChunk(x, y))
    return out


def build(input_state: Path | None, output_state: Path | None) -> R.ModelUpdater:
    torch.manual_seed(0)
    return R.ExperienceReplayModelUpdater(
        MLP(hidden=(32,)),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        memory_size=40,
        batch_size=16,
        components=[GradientMomentumProjection()],
        input_state_folder=input_state,
        output_state_folder=output_state,
        seed=3,
        **QUIET,
    )


def parameter_tensors(updater: R.ModelUpdater) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in updater.learner.components[1].state_dict().items()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    source, target, index = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    updater = build(None if source == "-" else Path(source), target)
    updater.update(chunks()[index], task_id=index)
