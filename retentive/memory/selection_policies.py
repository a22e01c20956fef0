"""The update-end selection policies: herding (iCaRL), k-center (Sener & Savarese), gradient
diversity (GSS-like, Aljundi et al.) and forgetting counts (Toneva et al.).

Each keeps nothing while an update trains and chooses the memory at update end over the whole
chunk plus the current memory (see :mod:`retentive.memory.update_end` for the machinery and the
memory bound); the math lives in :mod:`retentive.memory.selection`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from retentive.memory.context import UpdateContext
from retentive.memory.selection import (
    class_quotas,
    forgetting_events,
    forgetting_scores,
    herding,
    k_center_greedy,
    last_parameters,
    per_sample_gradients,
)
from retentive.memory.update_end import UpdateEndPolicy, all_batches, candidate_features, check_feature_layers
from retentive.models.modes import evaluating


class HerdingPolicy(UpdateEndPolicy):
    """iCaRL's exemplar memory (Rebuffi et al., CVPR 2017): per class, herding in feature space.

    At update end every class seen gets an equal share of the memory (:func:`class_quotas`).
    A class with samples in the chunk is herded afresh over its chunk samples and its stored
    exemplars with the current model (:func:`~retentive.memory.selection.herding`, on
    L2-normalised features, iCaRL's ConstructExemplarSet); a class absent from the chunk keeps
    the first exemplars of its herding order (iCaRL's ReduceExemplarSet). The memory stores each
    class's exemplars in herding order, so the prefix rule holds across updates.

    Args:
        feature_layers: layers whose outputs are the features (flattened, concatenated);
            ``None``: the penultimate layer (the input of the last submodule with parameters).
        batch_size: samples per forward pass.

    Memory: ``N x D`` floats of features (``N`` = chunk + memory), plus the padded per-class
    copy herding uses, ``classes x max class size x D``.
    """

    name = "herding"

    def __init__(
        self, feature_layers: Sequence[str] | None = None, normalize: bool = True, batch_size: int = 1024
    ) -> None:
        super().__init__(batch_size)
        self.feature_layers = None if feature_layers is None else list(feature_layers)
        self.normalize = bool(normalize)

    def check(self, capacity: int, model: nn.Module | None = None) -> None:
        if model is not None:
            check_feature_layers(model, self.feature_layers)

    def choose(self, ctx: UpdateContext) -> tuple[Tensor, int]:
        features, targets, m = candidate_features(ctx, self.feature_layers, self.batch_size)
        targets = targets.cpu()
        classes = int(targets.max()) + 1 if targets.numel() else 0
        available = torch.bincount(targets, minlength=classes)
        quotas = class_quotas(available, ctx.memory.capacity)
        in_chunk = torch.zeros(classes, dtype=torch.bool)
        in_chunk[targets[m:]] = True
        herd = in_chunk[targets]  # the rows of classes the chunk brings
        picked = herding(
            features[herd.to(features.device)], targets[herd], torch.where(in_chunk, quotas, 0), self.normalize
        )
        herded = herd.nonzero().squeeze(1)[picked.cpu()]
        # classes only in memory: the first quota_c exemplars in slot (herding) order
        rank = torch.zeros_like(targets)
        old = (~herd).nonzero().squeeze(1)
        if old.numel():
            order = torch.argsort(targets[old], stable=True)
            sorted_t = targets[old][order]
            first = torch.searchsorted(sorted_t, sorted_t, right=False)
            rank[old[order]] = torch.arange(old.numel()) - first
        kept_old = old[rank[old] < quotas[targets[old]]]
        chosen = torch.cat([kept_old, herded])
        return chosen[torch.argsort(targets[chosen], stable=True)], m


class KCenterPolicy(UpdateEndPolicy):
    """A k-center coreset of the chunk and the memory in feature space (Sener & Savarese, ICLR
    2018): greedy farthest-point selection, within twice the optimal covering radius.

    Class-agnostic, as in the paper: the memory covers the feature space, not the label set.

    Args:
        feature_layers: as for :class:`HerdingPolicy` (penultimate layer by default).
        batch_size: samples per forward pass.

    Memory: ``N x D`` floats of features and ``O(N)`` distances; time ``O(N * D * capacity)``.
    """

    name = "k_center"

    def __init__(self, feature_layers: Sequence[str] | None = None, batch_size: int = 1024) -> None:
        super().__init__(batch_size)
        self.feature_layers = None if feature_layers is None else list(feature_layers)

    def check(self, capacity: int, model: nn.Module | None = None) -> None:
        if model is not None:
            check_feature_layers(model, self.feature_layers)

    def choose(self, ctx: UpdateContext) -> tuple[Tensor, int]:
        features, targets, m = candidate_features(ctx, self.feature_layers, self.batch_size)
        chosen = k_center_greedy(features, ctx.memory.capacity).cpu()
        return chosen[torch.argsort(targets.cpu()[chosen], stable=True)], m


class GradientDiversityPolicy(UpdateEndPolicy):
    """A memory of diverse gradients: Aljundi et al.'s gradient-based sample selection objective
    (GSS, NeurIPS 2019: keep samples whose loss gradients have low cosine similarity to one
    another), solved at update end by greedy k-center on L2-normalised per-sample gradients.

    For unit vectors ``||g_i - g_j||^2 = 2 - 2 cos(g_i, g_j)``, so each farthest-point step adds
    the candidate whose largest cosine similarity to those already kept is smallest. Per-sample
    gradients come from ``torch.func`` (``vmap`` of ``grad`` over ``functional_call``), one batch
    at a time, in eval mode.

    Args:
        parameters: ``"last"`` [default] the parameters of the last submodule that has any (the
            classifier: cheap, ``D = classes x (features + 1)``), ``"all"`` every trainable
            parameter, or a list of parameter names.
        sketch_dim: gradients longer than this are count-sketched to ``sketch_dim`` dimensions
            (a fixed random hash and sign per coordinate, which preserves inner products in
            expectation) so that the ``N x D`` matrix stays bounded; ``None`` never sketches.
        batch_size: samples per vmapped gradient batch.

    Memory: ``N x min(D, sketch_dim)`` floats, plus one batch of per-sample gradients
    (``batch_size x D``).
    """

    name = "gradient_diversity"

    def __init__(
        self, parameters: str | Sequence[str] = "last", sketch_dim: int | None = 1024, batch_size: int = 256
    ) -> None:
        super().__init__(batch_size)
        if isinstance(parameters, str) and parameters not in ("last", "all"):
            raise ValueError(f"parameters must be 'last', 'all' or a list of parameter names, got {parameters!r}")
        if sketch_dim is not None and (not isinstance(sketch_dim, int) or sketch_dim < 1):
            raise ValueError(f"sketch_dim must be an int >= 1 or None, got {sketch_dim!r}")
        self.parameters = parameters if isinstance(parameters, str) else list(parameters)
        self.sketch_dim = sketch_dim

    def parameter_names(self, model: nn.Module) -> list[str]:
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        if not trainable:
            raise ValueError(
                f"the gradient-diversity memory policy needs trainable parameters, but {type(model).__name__} has none "
                "(all have requires_grad=False)"
            )
        if self.parameters == "all":
            return trainable
        if self.parameters == "last":
            return last_parameters(model)
        missing = [n for n in self.parameters if n not in trainable]
        if missing:
            raise ValueError(
                f"parameters {missing} are not trainable parameters of {type(model).__name__}; it has {trainable}"
            )
        return list(self.parameters)

    def check(self, capacity: int, model: nn.Module | None = None) -> None:
        if model is not None:
            self.parameter_names(model)

    def choose(self, ctx: UpdateContext) -> tuple[Tensor, int]:
        names = self.parameter_names(ctx.model)
        sketch: tuple[Tensor, Tensor] | None = None
        rows, targets, m = [], [], 0
        with evaluating(ctx.model, no_grad=False):
            for where, x, y, t in all_batches(ctx, self.batch_size):
                g = per_sample_gradients(ctx.model, ctx.loss_fn, x, y.long(), names, t)
                if self.sketch_dim is not None and g.shape[1] > self.sketch_dim:
                    if sketch is None:
                        gen = torch.Generator().manual_seed(0x5EED)  # the same hash on every replica
                        bucket = torch.randint(self.sketch_dim, (g.shape[1],), generator=gen)
                        sign = torch.randint(2, (g.shape[1],), generator=gen).float() * 2 - 1
                        sketch = (bucket.to(g.device), sign.to(g.device))
                    g = g.new_zeros(g.shape[0], self.sketch_dim).index_add_(1, sketch[0], g * sketch[1])
                rows.append(nn.functional.normalize(g.detach().float(), dim=1))
                targets.append(y.long())
                m += int(y.shape[0]) if where == "memory" else 0
        gradients, labels = torch.cat(rows), torch.cat(targets).cpu()
        chosen = k_center_greedy(gradients, ctx.memory.capacity).cpu()
        return chosen[torch.argsort(labels[chosen], stable=True)], m


class ForgettingPolicy(UpdateEndPolicy):
    """Keep the samples forgotten most often (Toneva et al., ICLR 2019), class-balanced.

    A forgetting event is a sample classified correctly at one evaluation and wrongly at the
    next. The policy evaluates the memory and the whole chunk at every epoch end it is given
    (:meth:`on_train_epoch_end`) and at update end; memory samples are evaluated again at every
    later update, so forgetting across updates counts. A sample never classified correctly
    counts as forgotten infinitely often (Toneva et al.). Each class keeps its quota
    (:func:`class_quotas`) of the highest counts; ties are broken by a random order drawn from
    the update index, the same on every replica.

    State (saved with the memory): per memory slot the sample id (``update << 32 | index`` in
    its chunk), its count, whether it was correct at the last evaluation and whether it was ever
    correct; during an update the same for the chunk's samples.

    Memory: ``O(N)`` counters and one batch of logits.
    """

    name = "forgetting"
    _KEYS = ("ids", "counts", "last", "learned")

    def __init__(self, batch_size: int = 1024) -> None:
        super().__init__(batch_size)
        self.slots = self._empty(0)
        self.chunk = self._empty(0)
        self.chunk_update = -1

    @staticmethod
    def _empty(n: int) -> dict[str, Tensor]:
        return {
            "ids": torch.full((n,), -1, dtype=torch.int64),
            "counts": torch.zeros(n, dtype=torch.int64),
            "last": torch.zeros(n, dtype=torch.bool),
            "learned": torch.zeros(n, dtype=torch.bool),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "slots": {k: v.clone() for k, v in self.slots.items()},
            "chunk": {k: v.clone() for k, v in self.chunk.items()},
            "chunk_update": torch.tensor(self.chunk_update, dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.slots = {k: state["slots"][k].cpu().clone() for k in self._KEYS} if "slots" in state else self._empty(0)
        self.chunk = {k: state["chunk"][k].cpu().clone() for k in self._KEYS} if "chunk" in state else self._empty(0)
        self.chunk_update = int(state.get("chunk_update", torch.tensor(-1)))

    def rows_removed(self, keep: Tensor, capacity: int) -> None:
        """The memory deleted the filled rows not in ``keep`` and moved the rest up: so do the counters."""
        if self.slots["ids"].numel() == keep.numel():
            self.slots = {k: v[keep.cpu()] for k, v in self.slots.items()}

    def _evaluate(self, ctx: UpdateContext) -> tuple[Tensor, int]:
        """Update the counters from one evaluation of memory then chunk; return all targets."""
        correct, targets, m = [], [], 0
        with evaluating(ctx.model):
            for where, x, y, t in all_batches(ctx, self.batch_size):
                correct.append((ctx.forward(x, t).argmax(1) == y).cpu())
                targets.append(y.long().cpu())
                m += int(y.shape[0]) if where == "memory" else 0
        now = torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool)
        if self.slots["ids"].numel() != m:  # filled by another policy: unknown history
            self.slots = self._empty(m)
        n_chunk = now.numel() - m
        if self.chunk_update != int(ctx.update) or self.chunk["ids"].numel() != n_chunk:
            self.chunk = self._empty(n_chunk)
            self.chunk["ids"] = (int(ctx.update) << 32) + torch.arange(n_chunk, dtype=torch.int64)
            self.chunk_update = int(ctx.update)
        for state, c in ((self.slots, now[:m]), (self.chunk, now[m:])):
            state["counts"] += forgetting_events(state["last"], c).long()
            state["learned"] |= c
            state["last"] = c.clone()
        return (torch.cat(targets) if targets else torch.zeros(0, dtype=torch.int64)), m

    def on_train_epoch_end(self, ctx: UpdateContext) -> None:
        """One evaluation point (call it at each epoch end for Toneva's per-epoch counting)."""
        if ctx.memory.capacity:
            self._evaluate(ctx)

    def choose(self, ctx: UpdateContext) -> tuple[Tensor, int]:
        targets, m = self._evaluate(ctx)
        union = {k: torch.cat([self.slots[k], self.chunk[k]]) for k in self._KEYS}
        score = forgetting_scores(union["counts"], union["learned"])
        classes = int(targets.max()) + 1 if targets.numel() else 0
        quotas = class_quotas(torch.bincount(targets, minlength=classes), ctx.memory.capacity)
        gen = torch.Generator().manual_seed(0xF0 + int(ctx.update))
        tie = torch.randperm(targets.numel(), generator=gen)
        # by class, then score descending, then the random tie order: one lexicographic sort
        order = tie[torch.argsort(-score[tie], stable=True)]
        order = order[torch.argsort(targets[order], stable=True)]
        sorted_t = targets[order]
        rank = torch.arange(order.numel()) - torch.searchsorted(sorted_t, sorted_t)
        chosen = order[rank < quotas[sorted_t]]
        self._chosen = {k: v[chosen].clone() for k, v in union.items()}
        return chosen, m

    def on_update_end(self, ctx: UpdateContext) -> None:
        done = self.selected_update
        super().on_update_end(ctx)
        if ctx.memory.capacity and self.selected_update != done:
            self.slots, self.chunk, self.chunk_update = self._chosen, self._empty(0), -1
            del self._chosen
