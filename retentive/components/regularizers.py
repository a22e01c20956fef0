"""Weight regularisers: online EWC (Schwarz et al., 2018) and Synaptic Intelligence (Zenke et al., 2017).

Both keep, per trainable parameter, an importance ``Ω`` and an anchor ``θ*`` (the weights at the
end of the previous update) and add the quadratic penalty

    penalty = Σ_i Ω_i (θ_i - θ*_i)²

which the Learner multiplies by the component's weight (``λ`` for EWC, ``c`` for SI) and adds
*after* Renate's loss normaliser (``normalized = False``): a penalty's strength must not depend on
how many other terms are present. As in Mammoth and Avalanche there is no factor 1/2, so Mammoth's
tuned ``λ`` and Renate's ``ewc_lambda`` mean the same here.

Online EWC: at the end of each update the Fisher diagonal of the model's own predictive
distribution over the chunk,

    F_i = mean_x Σ_c p(c|x) (∂ log p(c|x) / ∂θ_i)²

(the expectation over the model's classes, computed exactly with per-sample Jacobians, in eval
mode), is folded into the importance, ``Ω <- γ Ω + F``, and the anchor moves to the current weights.

SI: after every optimizer step the path integral ``ω_i += -g_i Δθ_i`` grows (``g`` the gradient the
optimizer stepped with — that of the total loss, as in Mammoth — and ``Δθ`` the step actually
taken); at the end of the update ``Ω_i += ω_i / ((θ_i - θ_start,i)² + ξ)``, ``ω`` restarts at 0
and the anchor moves to the current weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from retentive.components.base import Batch, Component, StepContext, UpdateContext, positive
from retentive.data import nested
from retentive.errors import NonFiniteLossError
from retentive.models.modes import evaluating

#: per-sample Jacobian entries one Fisher batch may hold (B x C x P floats, 128 MiB of float32)
_FISHER_BUDGET = 1 << 25


def trainable_parameters(model: nn.Module, method: str) -> dict[str, nn.Parameter]:
    """``{name: parameter}`` of the trainable parameters; a clear error when there are none."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(
            f"{method} regularises trainable parameters, but {type(model).__name__} has none "
            f"({sum(1 for _ in model.parameters())} parameters, all with requires_grad=False)"
        )
    return params


def quadratic_penalty(
    params: Mapping[str, Tensor], importance: Mapping[str, Tensor], anchor: Mapping[str, Tensor]
) -> Tensor:
    """``Σ_i Ω_i (θ_i - θ*_i)²`` over every parameter tensor (a scalar)."""
    terms = [(importance[n] * (p - anchor[n]).pow(2)).sum() for n, p in params.items()]
    return torch.stack(terms).sum()


class _Routed(nn.Module):
    """``model`` called through ``forward`` (routing, transforms), for ``torch.func.functional_call``."""

    def __init__(self, model: nn.Module, forward: Callable[[object, Tensor], Tensor]) -> None:
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, x: object, t: Tensor) -> Tensor:
        return self._forward(x, t)


def fisher_diagonal(
    model: nn.Module,
    batches: Iterable[Batch],
    forward: Callable[[object, Tensor], Tensor],
    exact_jacobians: bool = False,
) -> dict[str, Tensor]:
    """The diagonal of the Fisher information of ``model``'s predictive distribution, averaged
    over the samples of ``batches``: ``mean_x Σ_c p(c|x) (∂ log p(c|x)/∂θ)²``.

    ``forward(inputs, task_ids)`` must call ``model`` (it is how routing and test transforms are
    applied). The model is evaluated in eval mode and left in the mode it was in. When every
    trainable parameter belongs to an ``nn.Linear`` (MLPs), the per-sample squared gradients come
    in closed form from each layer's input ``a`` and output gradient ``δ_c``
    (``Σ_c p_c δ_c² ⊗ a²``: C backward passes per batch); otherwise (or with
    ``exact_jacobians=True``) from per-sample Jacobians by ``torch.func``. Both are exact.
    """
    params = trainable_parameters(model, "the Fisher diagonal")
    linear = _linear_layers(model, params)
    total = {name: torch.zeros_like(p.detach()) for name, p in params.items()}
    count = 0
    with evaluating(model, no_grad=False):
        for batch in batches:
            if linear is None or exact_jacobians:
                _fisher_by_jacobians(model, params, batch, forward, total)
            else:
                _fisher_linear(linear, batch, forward, total)
            count += int(batch.targets.shape[0])
    if count == 0:
        raise ValueError("the Fisher diagonal needs at least one sample; the chunk is empty")
    return {name: value / count for name, value in total.items()}


def _join(module: str, parameter: str) -> str:
    return f"{module}.{parameter}" if module else parameter


def _linear_layers(model: nn.Module, params: Mapping[str, nn.Parameter]) -> dict[str, nn.Linear] | None:
    """``{layer name: layer}`` when every trainable parameter is an ``nn.Linear``'s weight or bias."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    owned = {_join(name, kind) for name, m in layers.items() for kind, _ in m.named_parameters(recurse=False)}
    if not set(params) <= owned or len({id(m) for m in layers.values()}) != len(layers):
        return None
    return {name: m for name, m in layers.items() if any(p.requires_grad for p in m.parameters(recurse=False))}


def _fisher_linear(
    layers: dict[str, nn.Linear],
    batch: Batch,
    forward: Callable[[object, Tensor], Tensor],
    total: dict[str, Tensor],
) -> None:
    seen: dict[str, tuple[Tensor, Tensor]] = {}
    handles = [
        m.register_forward_hook(lambda mod, args, out, n=name: seen.__setitem__(n, (args[0], out)))
        for name, m in layers.items()
    ]
    try:
        with torch.enable_grad():
            log_p = forward(batch.inputs, batch.task_ids).log_softmax(dim=-1)
    finally:
        for handle in handles:
            handle.remove()
    names = list(seen)
    outputs = [seen[n][1] for n in names]
    p = log_p.detach().exp()  # (B, C)
    weight = {n: torch.zeros_like(seen[n][1].detach()) for n in names}  # Σ_c p_c δ_c², per sample
    for c in range(log_p.shape[-1]):
        deltas = torch.autograd.grad(
            log_p[:, c].sum(), outputs, retain_graph=c + 1 < log_p.shape[-1], allow_unused=True
        )
        for n, delta in zip(names, deltas):
            if delta is not None:
                weight[n] += p[:, c : c + 1] * delta.pow(2)
    for n in names:
        a, w = seen[n][0].detach(), weight[n]
        a, w = a.reshape(-1, a.shape[-1]), w.reshape(-1, w.shape[-1])  # extra leading dims: one sample's
        layer = layers[n]
        if layer.weight.requires_grad:
            total[_join(n, "weight")] += w.T @ a.pow(2)
        if layer.bias is not None and layer.bias.requires_grad:
            total[_join(n, "bias")] += w.sum(0)


def _fisher_by_jacobians(
    model: nn.Module,
    params: Mapping[str, nn.Parameter],
    batch: Batch,
    forward: Callable[[object, Tensor], Tensor],
    total: dict[str, Tensor],
) -> None:
    detached = {name: p.detach() for name, p in params.items()}
    routed = _Routed(model, forward)

    def log_probs(weights: dict[str, Tensor], x: object, t: Tensor) -> Tensor:
        one = nested.tree_map(lambda v: v.unsqueeze(0), x)
        named = {f"model.{name}": w for name, w in weights.items()}
        return torch.func.functional_call(routed, named, (one, t.unsqueeze(0))).log_softmax(dim=-1).squeeze(0)

    jacobian = torch.func.vmap(torch.func.jacrev(log_probs), in_dims=(None, 0, 0))
    n = int(batch.targets.shape[0])
    with torch.no_grad():
        probs = forward(batch.inputs, batch.task_ids).softmax(dim=-1)
    per_batch = max(1, _FISHER_BUDGET // (probs.shape[-1] * sum(p.numel() for p in detached.values())))
    for start in range(0, n, per_batch):
        stop = min(n, start + per_batch)
        x = nested.index(batch.inputs, slice(start, stop))
        jac = jacobian(detached, x, batch.task_ids[start:stop])  # name -> (b, C, *shape)
        for name, j in jac.items():
            total[name] += torch.einsum("bc,bc...->...", probs[start:stop], j.pow(2))


def si_path_step_(omega: list[Tensor], grads: list[Tensor], before: list[Tensor], after: list[Tensor]) -> None:
    """In place: ``ω += -g (θ_after - θ_before)``, the path integral of one optimizer step."""
    delta = torch._foreach_sub(after, before)
    torch._foreach_mul_(delta, grads)
    torch._foreach_sub_(omega, delta)


def si_importance(omega: Tensor, total_change: Tensor, epsilon: float) -> Tensor:
    """One update's contribution to SI's importance: ``ω / (Δθ² + ξ)``."""
    return omega / (total_change.pow(2) + epsilon)


def _check_finite(values: Mapping[str, Tensor], what: str) -> None:
    bad = [name for name, v in values.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise NonFiniteLossError(
            f"{what} is not finite for parameters {bad}; the update was stopped and nothing was written"
        )


class _QuadraticPenalty(Component):
    """``weight Σ_i Ω_i (θ_i - θ*_i)²`` once an update has consolidated the importance ``Ω`` and the
    anchor ``θ*`` (EWC: the Fisher diagonal; SI: the path integral). A subclass keeps both as its
    state and, at update start, points ``_terms`` at them and sets ``_active``."""

    #: buffers (add_state / register_buffer), declared for the type checker
    consolidated: Tensor

    normalized = False

    def __init__(self, weight: float) -> None:
        super().__init__(weight)
        self._active = False  # a host copy of ``consolidated``: the step never reads a tensor
        self._terms: tuple[dict[str, Tensor], dict[str, Tensor]] = ({}, {})  # (Ω, θ*) by parameter name

    def loss(self, ctx: StepContext) -> Tensor | None:
        if not self._active:
            return None
        params = {n: p for n, p in ctx.model.named_parameters() if p.requires_grad}
        return quadratic_penalty(params, *self._terms)


class ElasticWeightConsolidation(_QuadraticPenalty):
    """Online EWC: ``λ Σ F_i (θ_i - θ*_i)²`` with a Fisher diagonal decayed by ``gamma`` per update.

    Args:
        weight: ``λ`` (Renate's ``ewc_lambda``) [0.4].
        gamma: the decay of the accumulated Fisher at each update (1: keep every update's in full,
            Mammoth's tuned Seq-MNIST value; 0: only the latest) [1].
        fisher_batch_size: chunk samples per Fisher pass (``None``: the update-level default).
    """

    def __init__(self, weight: float = 0.4, gamma: float = 1.0, fisher_batch_size: int | None = None) -> None:
        super().__init__(weight)
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        if fisher_batch_size is not None and int(fisher_batch_size) < 1:
            raise ValueError(f"fisher_batch_size must be >= 1 or None, got {fisher_batch_size}")
        self.gamma = float(gamma)
        self.fisher_batch_size = fisher_batch_size
        self.add_state("fisher", per_parameter=True)
        self.add_state("anchor", per_parameter=True)
        self.add_state("consolidated", torch.tensor(False))

    def on_update_start(self, ctx: UpdateContext) -> None:
        trainable_parameters(ctx.model, "EWC")
        self._active = bool(self.consolidated)
        # looked up once per update: the step reads them through these lists (after .to(device))
        self._terms = (self.parameter_state("fisher", ctx.model), self.parameter_state("anchor", ctx.model))

    def on_update_end(self, ctx: UpdateContext) -> None:
        fresh = fisher_diagonal(ctx.model, ctx.chunk_batches(self.fisher_batch_size), ctx.forward)
        # Under DDP every rank computes it on the whole chunk, with its own batch-norm statistics;
        # the Learner then gives every replica rank 0's (the saved model's) buffers, this included.
        _check_finite(fresh, "EWC's Fisher diagonal")
        fisher, anchor = self.parameter_state("fisher", ctx.model), self.parameter_state("anchor", ctx.model)
        with torch.no_grad():
            for name, p in trainable_parameters(ctx.model, "EWC").items():
                fisher[name].mul_(self.gamma).add_(fresh[name])
                anchor[name].copy_(p)
        _check_finite(fisher, "EWC's accumulated Fisher diagonal")
        self.consolidated.fill_(True)
        self._active = True

    def extra_repr(self) -> str:
        return f"weight={self.weight}, gamma={self.gamma}"


class SynapticIntelligence(_QuadraticPenalty):
    """SI: ``c Σ Ω_i (θ_i - θ*_i)²`` with Ω from the path integral of the loss along training.

    Args:
        weight: ``c`` (``si_c``) [Mammoth's Seq-MNIST: 1].
        epsilon: ``ξ``, the damping of ``Δθ²`` (``si_epsilon``) [Mammoth's Seq-MNIST: 0.9].
    """

    def __init__(self, weight: float = 1.0, epsilon: float = 0.9) -> None:
        super().__init__(weight)
        self.epsilon = positive("si_epsilon", epsilon, " (it keeps ω / (Δθ² + ξ) finite)")
        self.add_state("omega", per_parameter=True)  # ω, this update's path integral
        self.add_state("importance", per_parameter=True)  # Ω
        self.add_state("anchor", per_parameter=True)  # θ at the start of this update (θ*)
        self.add_state("consolidated", torch.tensor(False))
        self._omega: list[Tensor] = []
        self._grads: list[Tensor] = []
        self._before: list[Tensor] = []

    def _params(self, model: nn.Module) -> dict[str, nn.Parameter]:
        return trainable_parameters(model, "SI")

    def on_update_start(self, ctx: UpdateContext) -> None:
        # A resumed fit restores omega and anchor from its checkpoint after this hook.
        params = self._params(ctx.model)
        anchor, omega = self.parameter_state("anchor", ctx.model), self.parameter_state("omega", ctx.model)
        with torch.no_grad():
            for name, p in params.items():
                anchor[name].copy_(p)
                omega[name].zero_()
        self._active = bool(self.consolidated)
        self._terms = (self.parameter_state("importance", ctx.model), anchor)
        self._omega = list(omega.values())

    def on_before_optimizer_step(self, ctx: StepContext) -> None:
        params = ctx.parameters()
        self._before = [p.detach().clone() for p in params]
        self._grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]

    def on_after_step(self, ctx: StepContext) -> None:
        if not self._before:
            return
        si_path_step_(self._omega, self._grads, self._before, [p.detach() for p in ctx.parameters()])
        self._before, self._grads = [], []

    def on_update_end(self, ctx: UpdateContext) -> None:
        omega = self.parameter_state("omega", ctx.model)
        importance = self.parameter_state("importance", ctx.model)
        anchor = self.parameter_state("anchor", ctx.model)
        with torch.no_grad():
            for name, p in self._params(ctx.model).items():
                importance[name].add_(si_importance(omega[name], p - anchor[name], self.epsilon))
                anchor[name].copy_(p)
                omega[name].zero_()
        _check_finite(importance, "SI's importance")
        self.consolidated.fill_(True)
        self._active = True

    def extra_repr(self) -> str:
        return f"weight={self.weight}, epsilon={self.epsilon}"
