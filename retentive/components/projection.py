"""Gradient projection: GEM (Lopez-Paz & Ranzato, 2017) and A-GEM (Chaudhry et al., 2019).

Both act after backward, before the optimizer step, on the flattened gradient ``g`` of the
trainable parameters, and leave the loss alone (no loss term, weight 0).

GEM keeps one constraint per past task ``k``: ``<g̃, g_k> >= 0`` with ``g_k`` the gradient of the
task loss on that task's episodic memory. When ``g`` violates one, it is replaced by the solution
of GEM's dual quadratic program (``G`` the ``t x p`` matrix of the ``g_k``, ``γ`` the
``memory_strength``)

    min_v  ½ vᵀ(GGᵀ)v + (Gg)ᵀv   s.t.  v >= γ,        g̃ = Gᵀv + g,

which for ``γ = 0`` is the closest gradient to ``g`` (in L2) that satisfies every constraint. The
``t x t`` program is solved exactly in torch by enumerating its active sets (all at once, ``2^t``
small systems) up to ``t = 10`` past tasks, and by projected gradient descent beyond.

A-GEM: ``g_ref`` is the gradient of the task loss on a memory batch of ``sample_size``; if
``<g, g_ref> < 0``, ``g̃ = g - (<g, g_ref> / <g_ref, g_ref>) g_ref``. Under data parallelism each
rank draws its own share of one memory draw and ``g_ref`` is averaged over the ranks, so every
replica projects the same (already averaged) gradient onto the same reference.

Neither reads a tensor on the host: the "is a constraint violated" test is a ``torch.where``.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from retentive.components.base import Component, StepContext, UpdateContext
from retentive.memory.buffer import MemoryBatch
from retentive.memory.protocol import ReplayMemory
from retentive.models.routing import forward_routed

#: GEM's regulariser of GGᵀ (as in the authors' code), and the largest t solved by enumeration
GEM_EPS = 1e-3
MAX_EXACT_TASKS = 10


def flat_grad(params: list[nn.Parameter]) -> Tensor:
    """The gradients of ``params`` as one vector (zeros for parameters without a gradient)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def assign_flat_grad_(params: list[nn.Parameter], flat: Tensor) -> None:
    """Write ``flat`` back into the parameters' ``.grad`` (in place, shapes restored)."""
    offset = 0
    for p in params:
        n = p.numel()
        value = flat[offset : offset + n].view_as(p).to(p.dtype)
        if p.grad is None:
            p.grad = value.clone()
        else:
            p.grad.copy_(value)
        offset += n


def agem_project(g: Tensor, g_ref: Tensor) -> Tensor:
    """A-GEM: ``g - (g·r / r·r) r`` when ``g·r < 0``, else ``g``."""
    dot = torch.dot(g, g_ref)
    ref_sq = torch.dot(g_ref, g_ref).clamp(min=torch.finfo(g.dtype).tiny)
    return torch.where(dot < 0, g - (dot / ref_sq) * g_ref, g)


def _box_qp_exact(P: Tensor, c: Tensor) -> Tensor:
    """``argmin_{u >= 0} ½ uᵀPu + cᵀu`` for positive definite ``P`` (t small), by trying every
    active set at once and keeping the one that satisfies the KKT conditions."""
    t = P.shape[0]
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=t)), dtype=P.dtype, device=P.device)  # (S, t)
    free = masks.unsqueeze(2) * masks.unsqueeze(1)  # (S, t, t): 1 where both free
    eye = torch.eye(t, dtype=P.dtype, device=P.device)
    A = P.unsqueeze(0) * free + eye * (1.0 - masks).unsqueeze(1)
    b = -c.unsqueeze(0) * masks
    u = torch.linalg.solve(A, b.unsqueeze(-1)).squeeze(-1)  # zeros where fixed
    grad = u @ P + c  # (S, t)
    scale = c.abs().max().clamp(min=1.0) * 1e-9
    feasible = (u >= -scale).all(1) & ((grad >= -scale) | (masks > 0)).all(1)
    objective = 0.5 * (u @ P * u).sum(1) + (u * c).sum(1)
    objective = torch.where(feasible, objective, torch.full_like(objective, float("inf")))
    best = u[objective.argmin()]
    return best.clamp(min=0.0)


def _box_qp_iterative(P: Tensor, c: Tensor, iterations: int = 2000) -> Tensor:
    """The same program by projected gradient descent (step ``1/trace(P)``), for large ``t``."""
    step = 1.0 / torch.trace(P).clamp(min=torch.finfo(P.dtype).tiny)
    u = torch.zeros_like(c)
    for _ in range(iterations):
        u = (u - step * (P @ u + c)).clamp(min=0.0)
    return u


def gem_project(g: Tensor, G: Tensor, margin: float = 0.0, eps: float = GEM_EPS) -> Tensor:
    """GEM's projection of ``g`` against the rows of ``G`` (one per past task).

    Returns ``g`` unchanged when every ``g·g_k >= 0``; else ``Gᵀv + g`` with ``v`` the solution of
    the dual program (module docstring), solved in float64.
    """
    if G.shape[0] == 0:
        return g
    G64, g64 = G.double(), g.double()
    P = G64 @ G64.T
    P = 0.5 * (P + P.T) + eps * torch.eye(P.shape[0], dtype=P.dtype, device=P.device)
    q = G64 @ g64
    c = P.sum(1) * margin + q  # v = u + margin
    solve = _box_qp_exact if G.shape[0] <= MAX_EXACT_TASKS else _box_qp_iterative
    v = solve(P, c) + margin
    projected = (G64.T @ v + g64).to(g.dtype)
    return torch.where((q < 0).any(), projected, g)


def _task_loss_grad(ctx: StepContext, params: list[nn.Parameter], batch: MemoryBatch) -> Tensor:
    logits = forward_routed(ctx.model, batch.inputs, batch.task_ids.long())
    loss = ctx.task_loss(logits, batch.targets.long())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


class GradientEpisodicMemory(Component):
    """GEM's projection, one constraint per past task in memory.

    The memory is filled per task at the end of each update (``GradientEpisodicMemoryModelUpdater``);
    this component reads the task groups once per update.

    Args:
        memory_strength: ``γ``, the lower bound of the dual variables (GEM's ``margin``) [0.5].
    """

    def __init__(self, memory_strength: float = 0.5) -> None:
        super().__init__(weight=0.0)
        if not float(memory_strength) >= 0.0:
            raise ValueError(f"memory_strength must be >= 0, got {memory_strength}")
        self.memory_strength = float(memory_strength)
        self._groups: list[MemoryBatch] = []

    def on_update_start(self, ctx: UpdateContext) -> None:
        memory = ctx.memory
        self._groups = []
        if not len(memory):
            return
        tasks = memory.decoded("task_ids")
        for task in torch.unique(tasks).tolist():
            if task == ctx.task_id:
                continue
            self._groups.append(memory.gather((tasks == task).nonzero().flatten()))

    def on_before_optimizer_step(self, ctx: StepContext) -> None:
        if not self._groups:
            return
        params = ctx.parameters()
        g = flat_grad(params)
        G = torch.stack([_task_loss_grad(ctx, params, batch) for batch in self._groups])
        assign_flat_grad_(params, gem_project(g, G, self.memory_strength))

    def on_update_end(self, ctx: UpdateContext) -> None:
        self._groups = []

    def extra_repr(self) -> str:
        return f"memory_strength={self.memory_strength}"


class AveragedGradientEpisodicMemory(Component):
    """A-GEM's projection against the gradient on a memory batch of ``sample_size``.

    Args:
        sample_size: memory samples per reference gradient (over all ranks together) [64].
    """

    def __init__(self, sample_size: int = 64) -> None:
        super().__init__(weight=0.0)
        if not isinstance(sample_size, int) or sample_size < 1:
            raise ValueError(f"sample_size must be an int >= 1, got {sample_size!r}")
        self.sample_size = sample_size
        self._memory: list[ReplayMemory] = []

    def on_update_start(self, ctx: UpdateContext) -> None:
        self._memory = [ctx.memory]
        self._share = max(1, self.sample_size // max(1, ctx.world_size))

    def on_before_optimizer_step(self, ctx: StepContext) -> None:
        if not self._memory or not len(self._memory[0]):
            return
        batch = self._memory[0].sample(self._share, ctx.rank, ctx.world_size)
        if batch is None:
            return
        params = ctx.parameters()
        g_ref = ctx.all_reduce_mean(_task_loss_grad(ctx, params, batch))
        assign_flat_grad_(params, agem_project(flat_grad(params), g_ref))

    def on_update_end(self, ctx: UpdateContext) -> None:
        self._memory = []

    def extra_repr(self) -> str:
        return f"sample_size={self.sample_size}"
