"""Distillation from the model as it was when the update started: LwF and iCaRL.

LwF (Li & Hoiem, 2016), as Avalanche and so Renate compute it: on the new samples,

    L_LwF = KL( softmax(z_old / T) || softmax(z / T) )        (mean over the batch)

over the outputs of the classes seen before this update, ``z_old`` the logits of a frozen copy of
the model taken at the start of the update (eval mode). Its weight ``alpha`` is added after
Renate's normaliser, as Avalanche adds it to the task loss.

iCaRL (Rebuffi et al., 2017): the loss is binary cross-entropy over the classes seen so far, on
new and exemplar samples alike, with one-hot targets for this update's classes and
``sigmoid(z_old)`` for the earlier ones; at the end of each update ``memory_size // classes``
exemplars per class are chosen by herding on L2-normalised features (earlier classes keep their
first ones), and the class means of the exemplars' normalised features define the
nearest-mean-of-exemplars classifier (:class:`NearestMeanOfExemplars`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retentive.components.base import Component, StepContext, UpdateContext, positive
from retentive.components.exemplars import balanced_quotas, replace_memory
from retentive.data import nested
from retentive.memory.identity import IDENTITY_KEYS
from retentive.memory.selection import herding
from retentive.models.modes import evaluating
from retentive.models.protocol import forward_routed, takes_task_ids
from retentive.models.taps import FeatureTap


def distillation_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``KL(softmax(teacher/T) || softmax(student/T))``, summed over classes, mean over samples."""
    log_p = F.log_softmax(student_logits / temperature, dim=-1)
    q = F.softmax(teacher_logits.detach().to(log_p.dtype) / temperature, dim=-1)
    return F.kl_div(log_p, q, reduction="batchmean")


def icarl_targets(targets: Tensor, teacher_logits: Tensor | None, old: Tensor, num_classes: int) -> Tensor:
    """iCaRL's BCE targets: one-hot labels, with ``sigmoid(z_old)`` in the columns of old classes."""
    onehot = F.one_hot(targets.long(), num_classes).to(torch.float32)
    if teacher_logits is None or old.numel() == 0:
        return onehot
    onehot[:, old] = torch.sigmoid(teacher_logits[:, old].detach().float())
    return onehot


def nme_scores(features: Tensor, class_means: Tensor, has_mean: Tensor) -> Tensor:
    """Nearest-mean scores: ``-||f/|f| - μ_c||²`` per class, ``-inf`` for classes without exemplars."""
    f = F.normalize(features.flatten(1).float(), dim=-1)
    scores = -torch.cdist(f, class_means.float()).pow(2)
    return scores.masked_fill(~has_mean.to(scores.device).unsqueeze(0), float("-inf"))


def detached_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in its mode) that no optimizer or feature tap touches.

    A deep copy shares the model's hook functions (e.g. feature taps); a teacher's forward passes
    must not overwrite the features the learner captured from the model, so its hooks are dropped.
    """
    teacher = copy.deepcopy(model)
    for module in teacher.modules():
        module._forward_hooks.clear()
        module._forward_pre_hooks.clear()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode that no optimizer or feature tap touches."""
    return detached_copy(model).eval()


def chunk_classes(ctx: UpdateContext) -> Tensor:
    """The distinct labels of the current chunk (every rank iterates the whole chunk alike)."""
    labels = [batch.targets.long() for batch in ctx.chunk_batches()]
    return torch.unique(torch.cat(labels)) if labels else torch.empty(0, dtype=torch.long)


class _SeenClasses(Component):
    """Tracks the classes seen in earlier updates (a growing mask) and the start-of-update teacher.

    The teacher is not state: a resumed fit rebuilds it at ``on_update_start`` from the model the
    update started from (the checkpoint's weights are applied after that hook).
    """

    #: buffers (add_state / register_buffer), declared for the type checker
    seen_classes: Tensor

    def __init__(self, weight: float) -> None:
        super().__init__(weight)
        self.add_state("seen_classes", torch.zeros(0, dtype=torch.bool))
        self._teacher: list[nn.Module] = []  # a list keeps it out of the state dict and .to()
        self._old = torch.empty(0, dtype=torch.long)
        self._active_classes = torch.empty(0, dtype=torch.long)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in ("seen_classes", "class_means", "has_mean"):  # states that grow with the classes
            key = prefix + name
            if key in state_dict and hasattr(self, name) and getattr(self, name).shape != state_dict[key].shape:
                setattr(self, name, torch.zeros_like(state_dict[key]).to(getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _grow(self, name: str, size: int, *trailing: int) -> None:
        value = getattr(self, name)
        if value.shape[0] < size:
            grown = torch.zeros((size, *trailing) if trailing else (size,), dtype=value.dtype, device=value.device)
            grown[: value.shape[0]] = value
            setattr(self, name, grown)

    def on_update_start(self, ctx: UpdateContext) -> None:
        current = chunk_classes(ctx).to(self.seen_classes.device)
        size = int(max(self.seen_classes.numel(), int(current.max()) + 1 if current.numel() else 0))
        self._grow("seen_classes", size)
        self._old = self.seen_classes.nonzero().flatten()
        active = self.seen_classes.clone()
        active[current] = True
        self._active_classes = active.nonzero().flatten()
        self._teacher = [frozen_copy(ctx.model)] if self._old.numel() else []

    def on_update_end(self, ctx: UpdateContext) -> None:
        self.seen_classes[self._active_classes] = True
        self._teacher = []

    def teacher_logits(self, inputs: Any, task_ids: Tensor) -> Tensor | None:
        if not self._teacher:
            return None
        with torch.no_grad():
            return forward_routed(self._teacher[0], inputs, task_ids)


class LearningWithoutForgetting(_SeenClasses):
    """LwF's distillation term on the new samples, over the classes seen before this update.

    Args:
        weight: ``alpha`` [1].
        temperature: the softmax temperature ``T`` [2].
    """

    normalized = False

    def __init__(self, weight: float = 1.0, temperature: float = 2.0) -> None:
        super().__init__(weight)
        self.temperature = positive("temperature", temperature)

    def loss(self, ctx: StepContext) -> Tensor | None:
        old_logits = self.teacher_logits(ctx.inputs, ctx.task_ids)
        if old_logits is None:
            return None
        old = self._old.to(ctx.outputs.device)
        return distillation_kl(ctx.outputs[:, old], old_logits[:, old], self.temperature)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}"


class ICaRL(_SeenClasses):
    """iCaRL's distillation loss, herding exemplar memory and class means.

    Use it as the only loss (``ICaRLModelUpdater`` sets the task loss's weight to 0) with a memory
    filled only by this component (the updater turns per-step insertion off).

    Args:
        memory_size: the exemplar budget, shared equally by the classes seen.
        feature_layer: the submodule whose output is the feature vector ``φ(x)``; ``None``: the
            model's feature vector (:func:`retentive.models.protocol.feature_layer`: its declared
            layer, else the input of its last ``nn.Linear``).
    """

    #: buffers (add_state / register_buffer), declared for the type checker
    class_means: Tensor
    has_mean: Tensor

    def __init__(self, memory_size: int, feature_layer: str | None = None) -> None:
        super().__init__(1.0)
        self.memory_size = int(memory_size)
        self.feature_layer = feature_layer
        self.add_state("class_means", torch.zeros(0, 0))
        self.add_state("has_mean", torch.zeros(0, dtype=torch.bool))

    def loss(self, ctx: StepContext) -> Tensor | None:
        outputs, targets, inputs, task_ids = ctx.outputs, ctx.targets, ctx.inputs, ctx.task_ids
        if ctx.memory is not None and ctx.memory_outputs is not None:
            outputs = torch.cat([outputs, ctx.memory_outputs])
            targets = torch.cat([targets, ctx.memory.targets.long()])
            memory_inputs = ctx.memory_inputs.to(inputs.dtype) if torch.is_tensor(inputs) else ctx.memory_inputs
            inputs = (
                torch.cat([inputs, memory_inputs]) if torch.is_tensor(inputs) else nested.cat([inputs, memory_inputs])
            )
            task_ids = torch.cat([task_ids, ctx.memory.task_ids.to(task_ids.device).long()])
        old_logits = self.teacher_logits(inputs, task_ids)
        targets_bce = icarl_targets(targets, old_logits, self._old.to(outputs.device), outputs.shape[-1])
        active = self._active_classes.to(outputs.device)
        return F.binary_cross_entropy_with_logits(outputs[:, active].float(), targets_bce[:, active])

    # ------------------------------------------------------------------ update end
    def _features(self, ctx: UpdateContext, inputs: Any, task_ids: Tensor, taps: FeatureTap) -> Tensor:
        ctx.forward(inputs, task_ids)
        features = F.normalize(taps.features(int(task_ids.shape[0])), dim=-1)
        # eval-mode features depend on each rank's batch-norm statistics until the Learner makes
        # them rank 0's (after this hook): every replica herds and averages the ranks' mean
        return F.normalize(ctx.all_reduce_mean(features), dim=-1)

    def on_update_end(self, ctx: UpdateContext) -> None:
        super().on_update_end(ctx)
        classes = self.seen_classes.nonzero().flatten().cpu()
        quotas = balanced_quotas(self.memory_size, int(classes.numel()), "classes")
        taps = FeatureTap(ctx.model, self.feature_layer)
        try:
            with evaluating(ctx.model):
                rows = self._exemplars(ctx, classes, quotas, taps)
                replace_memory(ctx.memory, rows, offered=sum(int(b.targets.shape[0]) for b in ctx.chunk_batches()))
                self._class_means(ctx, taps)
        finally:
            taps.remove()

    def _exemplars(self, ctx: UpdateContext, classes: Tensor, quotas: list[int], taps: FeatureTap) -> dict[str, Tensor]:
        """Old classes keep their first exemplars; this chunk's new classes are herded."""
        memory = ctx.memory
        held = dict(memory.rows(0, len(memory)).data) if len(memory) else {}
        chunk = list(ctx.chunk_batches())
        data: dict[str, Any] = {
            "inputs": nested.cat([b.inputs for b in chunk]) if chunk else None,
            "targets": torch.cat([b.targets.long() for b in chunk]),
            "task_ids": torch.cat([b.task_ids.long() for b in chunk]),
        }
        rows = torch.arange(int(data["targets"].shape[0]))
        data.update({k: v.to(data["targets"].device) for k, v in memory.chunk_identity(rows).items()})
        new = [c for c in classes.tolist() if not (held and bool((held["targets"].cpu() == c).any()))]
        picks = self._herd(ctx, data, new, [quotas[classes.tolist().index(c)] for c in new], taps)
        parts: list[dict[str, Tensor]] = []
        for c, quota in zip(classes.tolist(), quotas):
            if c in picks:
                idx = picks[c]
                parts.append({k: v[idx] for k, v in data.items()})
            else:
                idx = (held["targets"].cpu() == c).nonzero().flatten()[:quota]
                parts.append(
                    {
                        k: v[idx.to(v.device)].cpu()
                        for k, v in held.items()
                        if k in ("inputs", "targets", "task_ids", *IDENTITY_KEYS)
                    }
                )
        return {
            k: nested.cat([p[k] for p in parts]) if k == "inputs" else torch.cat([p[k] for p in parts])
            for k in parts[0]
        }

    def _herd(
        self, ctx: UpdateContext, data: dict[str, Any], new: Sequence[int], quotas: Sequence[int], taps: FeatureTap
    ) -> dict[int, Tensor]:
        """Herd each new class's exemplars among its chunk samples (features already normalised)."""
        if not new:
            return {}
        members = [(data["targets"] == c).nonzero().flatten() for c in new]
        features = torch.cat(
            [  # in batches, class by class
                self._features(
                    ctx, nested.index(data["inputs"], m[i : i + 1024]), data["task_ids"][m[i : i + 1024]], taps
                )
                for m in members
                for i in range(0, m.numel(), 1024)
            ]
        )
        labels = torch.cat([torch.full((int(m.numel()),), i, dtype=torch.int64) for i, m in enumerate(members)])
        kept = torch.tensor([min(q, int(m.numel())) for q, m in zip(quotas, members)], dtype=torch.int64)
        picked = herding(features, labels.to(features.device), kept, normalize=False).cpu()
        rows = torch.cat(members).cpu()[picked].split(kept.tolist())
        return {c: rows[i].to(members[i].device) for i, c in enumerate(new)}

    def _class_means(self, ctx: UpdateContext, taps: FeatureTap) -> None:
        sums: Tensor | None = None
        counts = torch.zeros(self.seen_classes.numel(), device=self.seen_classes.device)
        for batch in ctx.memory_batches():
            f = self._features(ctx, batch.inputs, batch.task_ids.long(), taps)
            if sums is None:
                sums = torch.zeros(self.seen_classes.numel(), f.shape[1], device=f.device)
            sums.index_add_(0, batch.targets.long().to(f.device), f)
            counts.index_add_(
                0, batch.targets.long().to(counts.device), torch.ones(batch.targets.shape[0], device=counts.device)
            )
        if sums is None:
            return
        self.class_means = F.normalize(sums / counts.clamp(min=1).unsqueeze(1).to(sums.device), dim=-1).to(
            self.seen_classes.device
        )
        self.has_mean = counts > 0

    def classifier(self, model: nn.Module) -> NearestMeanOfExemplars:
        """The nearest-mean-of-exemplars predictor for ``model`` from this component's class means."""
        return NearestMeanOfExemplars(model, self.feature_layer, self.class_means, self.has_mean)

    def extra_repr(self) -> str:
        return f"memory_size={self.memory_size}, feature_layer={self.feature_layer!r}"


class NearestMeanOfExemplars(nn.Module):
    """iCaRL's classifier: the class whose exemplar mean is nearest to the normalised feature.

    Its forward returns scores (higher is nearer), so ``argmax`` and
    :func:`retentive.evaluation.accuracy` work as with logits. A class without exemplars has no
    mean and the score ``-inf``: it is never predicted (documented behaviour, not an error).
    """

    #: buffers (add_state / register_buffer), declared for the type checker
    class_means: Tensor
    has_mean: Tensor

    def __init__(self, model: nn.Module, feature_layer: str | None, class_means: Tensor, has_mean: Tensor) -> None:
        super().__init__()
        if class_means.numel() == 0 or not bool(has_mean.any()):
            raise ValueError(
                "the nearest-mean-of-exemplars classifier has no class means yet; run an iCaRL update first"
            )
        self.model = model
        self.feature_layer = feature_layer
        self.takes_task_ids = takes_task_ids(model)
        self.register_buffer("class_means", class_means.detach().clone())
        self.register_buffer("has_mean", has_mean.detach().clone().bool())

    def forward(self, x: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """``(N, classes)`` scores, one column per output of the model: the class means cover only
        the classes seen so far (``-inf`` for the rest). A predictor, so no graph is built."""
        with torch.no_grad(), FeatureTap(self.model, self.feature_layer) as taps:
            logits = forward_routed(self.model, x, task_ids)
            features = taps.value()
        scores = nme_scores(features, self.class_means, self.has_mean)
        unseen = logits.shape[-1] - scores.shape[-1]
        return F.pad(scores, (0, unseen), value=float("-inf")) if unseen > 0 else scores


def icarl_classifier(model: nn.Module, state_folder: str | os.PathLike[str]) -> NearestMeanOfExemplars:
    """The NME predictor of an iCaRL state folder: weights into ``model``, class means from the state.

    ``model`` is built as for the updates (any weights; the folder's replace them).
    """
    from retentive.state import load_state

    state = load_state(state_folder)
    model.load_state_dict(state.model)
    learner = state.learner["learner"]
    types = list(learner["component_types"])
    if "ICaRL" not in types:
        raise ValueError(f"the state folder {str(state_folder)!r} holds no iCaRL component (it has {types})")
    saved = learner["components"][types.index("ICaRL")]
    recorded = state.manifest.get("hyperparameters", {})
    if "feature_layer" not in recorded:
        raise ValueError(f"the manifest of {str(state_folder)!r} does not name iCaRL's feature_layer")
    layer = recorded["feature_layer"]  # None: the model's feature vector, by the one rule
    return NearestMeanOfExemplars(model.eval(), layer, saved["class_means"], saved["has_mean"])
