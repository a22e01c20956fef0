"""A multi-head classifier for task-incremental learning: one shared trunk, one head per task.

The heads write into the global label space, so the usual ``CrossEntropyLoss`` on global labels,
the memory and DER's stored logits all work unchanged: with task ids, sample ``b`` gets its task's
head outputs at that task's classes and ``fill_value`` at every other class (a constant, so it
carries no gradient and matches exactly when DER compares stored and new logits). Without task
ids every head writes its classes: the class-incremental reading of the same model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from retentive.errors import DataError
from retentive.models.mlp import MLP


class MultiHeadClassifier(nn.Module):
    """``backbone`` features -> ``heads[t]`` for the samples of task ``t``.

    Args:
        backbone: maps inputs to ``(N, feature_dim)`` features.
        feature_dim: the width of those features.
        class_groups: ``class_groups[t]`` are the global labels of task ``t``'s classes (its head
            has one output per class, in this order). Groups may overlap (tasks sharing labels).
        num_classes: the size of the global label space [max label + 1].
        fill_value: the logit of classes outside a sample's task [-1e4: exp() is 0 in float32,
            float16 and bfloat16 alike, and the value is finite, so MSE against it stays finite].
    """

    takes_task_ids = True
    #: the feature vector: each head sees only its task's samples, the backbone every sample
    feature_layer = "backbone"

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        class_groups: Sequence[Sequence[int]],
        num_classes: int | None = None,
        fill_value: float = -1e4,
    ) -> None:
        super().__init__()
        groups = [[int(c) for c in group] for group in class_groups]
        if not groups or any(not g for g in groups):
            raise ValueError(f"every task needs at least one class, got class_groups={groups}")
        top = max(max(g) for g in groups)
        self.num_classes = int(num_classes) if num_classes is not None else top + 1
        if top >= self.num_classes or min(min(g) for g in groups) < 0:
            raise ValueError(f"class_groups {groups} do not fit num_classes={self.num_classes}")
        self.backbone = backbone
        self.heads = nn.ModuleList(nn.Linear(feature_dim, len(g)) for g in groups)
        self.fill_value = float(fill_value)
        for t, g in enumerate(groups):
            self.register_buffer(f"classes_{t}", torch.tensor(g, dtype=torch.long), persistent=False)

    @classmethod
    def mlp(
        cls,
        class_groups: Sequence[Sequence[int]],
        in_features: int = 784,
        hidden: Sequence[int] = (100, 100),
        num_classes: int | None = None,
    ) -> MultiHeadClassifier:
        """The DER paper's MNIST MLP (784-100-100) with one linear head per task."""
        trunk = MLP(in_features, hidden, num_classes=1).features
        return cls(trunk, int(hidden[-1]) if hidden else in_features, class_groups, num_classes)

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    def task_classes(self, task: int) -> Tensor:
        return getattr(self, f"classes_{task}")

    def forward(self, x: Tensor, task_ids: Tensor | None = None) -> Tensor:
        features = self.backbone(x)
        n = features.shape[0]
        out = features.new_full((n, self.num_classes), self.fill_value)
        if task_ids is None:
            rows = torch.arange(n, device=features.device).unsqueeze(1)
            for t, head in enumerate(self.heads):
                out = out.index_put((rows, self.task_classes(t).unsqueeze(0)), head(features))
            return out
        task_ids = task_ids.to(features.device).long()
        if task_ids.shape != (n,):
            raise DataError(f"need one task id per sample ({n}), got task ids of shape {tuple(task_ids.shape)}")
        bad = (task_ids < 0) | (task_ids >= self.num_tasks)
        if bool(bad.any()):
            raise DataError(
                f"task id {int(task_ids[bad][0])} has no head; this model has {self.num_tasks} heads (0..{self.num_tasks - 1})"
            )
        for t in torch.unique(task_ids).tolist():
            rows = (task_ids == t).nonzero().squeeze(1)
            values = self.heads[t](features[rows])
            out = out.index_put((rows.unsqueeze(1), self.task_classes(t).unsqueeze(0)), values)
        return out
