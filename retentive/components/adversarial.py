"""Retrospective adversarial replay (RAR; Kumari et al., NeurIPS 2022) and mixup of replayed samples.

RAR perturbs each replayed sample toward its nearest neighbour from the current batch in a
latent space, so that replay covers the boundary between old and new classes where forgetting
happens. Per step, as Avalanche's ``RARPlugin``:

1. a look-ahead model: the weights after one SGD step of ``opt_lr`` on the current batch;
2. features (the input of the last linear/conv layer by default) of the memory and current
   samples under it; each memory sample's target is the label of its nearest current sample of a
   *different* class (Euclidean distance; a memory sample with no such neighbour is not attacked);
3. ``iter_fgsm`` steps of targeted momentum-FGSM (MI-FGSM, decay ``decay_factor_fgsm``) on the
   look-ahead model, each of size ``epsilon_fgsm / iter_fgsm``, descending the loss toward the
   target and projected back into the L-inf ball of radius ``epsilon_fgsm`` (and the input range);
4. the model's task loss on the perturbed samples with their *true* labels.

Fixed relative to Avalanche 0.6.0's plugin, whose code and prose do not carry over: it recomputes
no gradient between FGSM iterations (so every iteration repeats the first step), it ascends the
loss toward the target (moving the sample away from the neighbour's class), it picks the
*farthest* differing neighbour (its loop never breaks), and it labels mixed samples with
``(lam*y1 + (1-lam)*y2).long()``. Here every iteration takes a fresh gradient, the attack
descends toward the target, the nearest differing neighbour is taken, and the adversarial term
uses the samples' own labels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from retentive.components.base import Component, StepContext, positive
from retentive.models.routing import forward_routed, takes_task_ids


def nearest_other_class(
    memory_features: Tensor, memory_targets: Tensor, current_features: Tensor, current_targets: Tensor
) -> tuple[Tensor, Tensor]:
    """For each memory sample, the label of its nearest current sample of another class.

    Returns ``(targets, valid)``; ``valid`` is false where every current sample shares the memory
    sample's label (its target is then its own label).
    """
    distances = torch.cdist(memory_features.flatten(1).float(), current_features.flatten(1).float())
    same = memory_targets.unsqueeze(1) == current_targets.unsqueeze(0)
    distances = distances.masked_fill(same, float("inf"))
    nearest = distances.argmin(dim=1)
    valid = ~same.all(dim=1)
    return torch.where(valid, current_targets[nearest], memory_targets), valid


def targeted_mifgsm(
    loss_of: Callable[[Tensor], Tensor],
    x: Tensor,
    epsilon: float,
    iterations: int,
    decay: float = 1.0,
    input_range: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """Iterated momentum FGSM that *decreases* ``loss_of(x)`` (a targeted attack), in the L-inf
    ball of radius ``epsilon`` around ``x`` (and ``input_range``); a per-sample L1-normalised
    gradient feeds the momentum, as in MI-FGSM (Dong et al., 2018)."""
    x = x.detach()
    step = epsilon / iterations
    momentum = torch.zeros_like(x)
    adversarial = x.clone()
    for _ in range(iterations):
        adversarial.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_of(adversarial), adversarial)
        norm = grad.abs().flatten(1).sum(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        momentum = decay * momentum + grad / norm
        adversarial = adversarial.detach() - step * momentum.sign()
        adversarial = torch.max(torch.min(adversarial, x + epsilon), x - epsilon)
        if input_range is not None:
            adversarial = adversarial.clamp(*input_range)
    return adversarial.detach()


def _last_layer(model: nn.Module) -> str:
    names = [name for name, module in model.named_modules() if isinstance(module, (nn.Linear, nn.Conv2d)) and name]
    if not names:
        raise ValueError(f"{type(model).__name__} has no linear or conv layer; pass name_ext_layer")
    return names[-1]


class AdversarialReplay(Component):
    """RAR's term: the task loss on memory samples perturbed toward their nearest current neighbour.

    Args:
        weight: the term's weight (Avalanche: ``1 - beta_coef``).
        epsilon_fgsm, iter_fgsm, decay_factor_fgsm: the attack's L-inf radius, steps and momentum.
        opt_lr: the learning rate of the look-ahead step on the current batch.
        name_ext_layer: the module whose *output* gives the features; default the *input* of the
            model's last linear/conv layer (its penultimate features).
        input_range: the valid input range the perturbed samples are clamped to (``None``: none).
    """

    def __init__(
        self,
        weight: float = 0.6,
        epsilon_fgsm: float = 0.0314,
        iter_fgsm: int = 2,
        decay_factor_fgsm: float = 1.0,
        opt_lr: float = 0.1,
        name_ext_layer: str | None = None,
        input_range: tuple[float, float] | None = (0.0, 1.0),
    ) -> None:
        super().__init__(weight)
        positive("epsilon_fgsm", epsilon_fgsm)
        if not isinstance(iter_fgsm, int) or iter_fgsm < 1:
            raise ValueError(f"iter_fgsm must be an int >= 1, got {iter_fgsm!r}")
        self.epsilon_fgsm, self.iter_fgsm, self.decay_factor_fgsm = (
            float(epsilon_fgsm),
            iter_fgsm,
            float(decay_factor_fgsm),
        )
        self.opt_lr = float(opt_lr)
        self.name_ext_layer = name_ext_layer
        self.input_range = None if input_range is None else (float(input_range[0]), float(input_range[1]))
        #: the last step's perturbed samples, targets and validity (for inspection and tests)
        self.last: dict[str, Tensor] = {}

    def _call(self, model: nn.Module, weights: dict[str, Tensor], x: Tensor, task_ids: Tensor) -> Tensor:
        args = (x, task_ids) if takes_task_ids(model) else (x,)
        return functional_call(model, weights, args, strict=False)

    def _features(self, model: nn.Module, weights: dict[str, Tensor], x: Tensor, task_ids: Tensor) -> Tensor:
        captured: list[Tensor] = []
        if self.name_ext_layer is not None:
            handle = model.get_submodule(self.name_ext_layer).register_forward_hook(lambda m, i, o: captured.append(o))
        else:
            layer = model.get_submodule(_last_layer(model))
            handle = layer.register_forward_pre_hook(lambda m, i: captured.append(i[0]))
        try:
            with torch.no_grad():
                self._call(model, weights, x, task_ids)
        finally:
            handle.remove()
        return captured[-1]

    def lookahead(self, ctx: StepContext) -> dict[str, Tensor]:
        """The weights after one SGD step of ``opt_lr`` on the current batch (nothing else changes)."""
        named: dict[str, Tensor] = {name: p for name, p in ctx.model.named_parameters() if p.requires_grad}
        loss = ctx.task_loss(self._call(ctx.model, named, ctx.inputs, ctx.task_ids), ctx.targets)
        grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
        return {
            n: (p.detach() if g is None else p.detach() - self.opt_lr * g) for (n, p), g in zip(named.items(), grads)
        }

    def perturb(self, ctx: StepContext) -> tuple[Tensor, Tensor, Tensor]:
        """The memory batch perturbed toward each sample's nearest current neighbour of another class."""
        assert ctx.memory is not None
        model, x_mem, y_mem, t_mem = ctx.model, ctx.memory_inputs, ctx.memory.targets, ctx.memory.task_ids
        weights = self.lookahead(ctx)
        targets, valid = nearest_other_class(
            self._features(model, weights, x_mem, t_mem),
            y_mem,
            self._features(model, weights, ctx.inputs, ctx.task_ids),
            ctx.targets,
        )

        def loss_of(x: Tensor) -> Tensor:  # summed, so each sample's gradient is its own
            per_sample = nn.functional.cross_entropy(self._call(model, weights, x, t_mem), targets, reduction="none")
            return (per_sample * valid).sum()

        adversarial = targeted_mifgsm(
            loss_of, x_mem, self.epsilon_fgsm, self.iter_fgsm, self.decay_factor_fgsm, self.input_range
        )
        adversarial = torch.where(valid.view(-1, *([1] * (x_mem.dim() - 1))), adversarial, x_mem.detach())
        return adversarial, targets, valid

    def loss(self, ctx: StepContext) -> Tensor | None:
        if ctx.memory is None or not torch.is_tensor(ctx.memory_inputs):
            return None
        adversarial, targets, valid = self.perturb(ctx)
        self.last = {"inputs": adversarial, "targets": targets, "valid": valid}
        return ctx.task_loss(forward_routed(ctx.model, adversarial, ctx.memory.task_ids), ctx.memory.targets)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, epsilon_fgsm={self.epsilon_fgsm}, iter_fgsm={self.iter_fgsm}"


class MixupReplay(Component):
    """Mixup (Zhang et al., 2018) of the replayed batch with a permutation of itself:
    ``lam * L(f(x_mix), y) + (1 - lam) * L(f(x_mix), y_perm)``, ``lam ~ Beta(coef_lambda, coef_lambda)``.
    """

    def __init__(self, weight: float = 0.6, coef_lambda: float = 1.0) -> None:
        super().__init__(weight)
        self.coef_lambda = positive("coef_lambda", coef_lambda)

    def loss(self, ctx: StepContext) -> Tensor | None:
        if ctx.memory is None or not torch.is_tensor(ctx.memory_inputs):
            return None
        x, y = ctx.memory_inputs, ctx.memory.targets
        assert ctx.rng is not None
        lam = ctx.rng.betavariate(self.coef_lambda, self.coef_lambda)
        order = torch.randperm(int(y.shape[0]), generator=ctx.generator).to(y.device)
        mixed = lam * x + (1 - lam) * x[order]
        logits = forward_routed(ctx.model, mixed, ctx.memory.task_ids)
        return lam * ctx.task_loss(logits, y) + (1 - lam) * ctx.task_loss(logits, y[order])

    def extra_repr(self) -> str:
        return f"weight={self.weight}, coef_lambda={self.coef_lambda}"
