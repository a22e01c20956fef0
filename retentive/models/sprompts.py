"""S-Prompts (Wang et al., NeurIPS 2022): one prompt set per task on a frozen ViT, and the task
of a test sample guessed from the nearest k-means center of each task's features.

Training task ``t`` learns only its prompt ``P_t`` (and, with ``per_task_classifier``, its head
``W_t``; otherwise one head is shared, Renate's default). When task ``t``'s update starts, the
L2-normalised [CLS] features of the frozen backbone over its chunk are clustered into
``clusters_per_task`` centers ``c_{t,j}``. At inference a sample's task is

    t*(x) = task of argmin_{t,j} || f(x)/||f(x)|| - c_{t,j} ||_2

and it is classified with ``P_{t*}`` and ``W_{t*}``. The model grows by one prompt per update
(:meth:`SPromptTransformer.adapt`); a state dict names how many prompts and centers it holds,
so loading one into a freshly built model first grows (or shrinks) it to fit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from retentive.models.kmeans import kmeans
from retentive.models.vit import check_positive, frozen_backbone


def nearest_task(features: Tensor, centers: Tensor, center_tasks: Tensor) -> Tensor:
    """Each sample's task: that of the center nearest its L2-normalised feature."""
    distances = torch.cdist(nn.functional.normalize(features, dim=1), centers)
    return center_tasks[distances.argmin(dim=1)]


class SPromptTransformer(nn.Module):
    """A frozen :class:`~retentive.models.VisionTransformer` with one prompt per task.

    Args:
        pretrained_model_name_or_path, image_size, patch_size, num_layers, num_heads, hidden_dim,
            mlp_dim, dropout, attention_dropout, num_channels: the backbone (see
            :class:`~retentive.models.VisionTransformer`).
        num_outputs: classes of the head(s).
        prompt_size: tokens per task prompt [10]; clusters_per_task: k-means centers per task [5];
        per_task_classifier: a head per task [False: one shared head] (Renate's defaults).
    """

    #: buffers (add_state / register_buffer), declared for the type checker
    centers: Tensor
    center_tasks: Tensor

    def __init__(
        self,
        pretrained_model_name_or_path: str | os.PathLike[str] | None = None,
        image_size: int = 32,
        patch_size: int = 4,
        num_layers: int = 12,
        num_heads: int = 12,
        hidden_dim: int = 768,
        mlp_dim: int = 3072,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        num_outputs: int = 10,
        prompt_size: int = 10,
        clusters_per_task: int = 5,
        per_task_classifier: bool = False,
        num_channels: int = 3,
    ) -> None:
        super().__init__()
        check_positive(prompt_size=prompt_size, clusters_per_task=clusters_per_task)
        self.transformer = frozen_backbone(locals())
        self.prompt_size = prompt_size
        self.clusters_per_task = clusters_per_task
        self.per_task_classifier = bool(per_task_classifier)
        self.num_outputs = int(num_outputs)
        d = self.transformer.embedding_size
        self.prompts = nn.ParameterList()
        self.heads = nn.ModuleList([nn.Linear(d, self.num_outputs)])
        self.register_buffer("centers", torch.zeros(0, d))
        self.register_buffer("center_tasks", torch.zeros(0, dtype=torch.long))

    @property
    def num_tasks(self) -> int:
        return len(self.prompts)

    # ---------------------------------------------------------------- growth
    def _grow_to(self, tasks: int) -> None:
        d = self.transformer.embedding_size
        if len(self.prompts) > tasks:  # a rollback to fewer tasks
            self.prompts = nn.ParameterList(list(self.prompts)[:tasks])
        if self.per_task_classifier and len(self.heads) > max(1, tasks):
            self.heads = self.heads[: max(1, tasks)]
        while len(self.prompts) < tasks:
            self.prompts.append(nn.Parameter(torch.empty(self.prompt_size, d).uniform_(-1, 1)))  # Renate's init
        for i, prompt in enumerate(self.prompts):  # earlier tasks' prompts stay as they are
            prompt.requires_grad_(i == len(self.prompts) - 1)
        while self.per_task_classifier and len(self.heads) < tasks:
            self.heads.append(nn.Linear(d, self.num_outputs))
        if self.per_task_classifier:
            for i, head in enumerate(self.heads):
                head.requires_grad_(i == len(self.heads) - 1)
        device = self.centers.device
        self.prompts.to(device)
        self.heads.to(device)

    def adapt(self, task_index: int | str) -> None:
        """Make sure prompts exist for tasks ``0..task_index`` (idempotent); only the newest trains.

        The updater passes the update's index. A string task id (Renate's names) changes nothing:
        loading a state dict grows the model to the prompts it holds in any case.
        """
        if isinstance(task_index, str):
            return
        if not isinstance(task_index, int) or isinstance(task_index, bool) or task_index < 0:
            raise ValueError(f"S-Prompts grows by update index, an int >= 0; got {task_index!r}")
        self._grow_to(max(self.num_tasks, task_index + 1))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # rebuild the structure the state names (its prompts and centers) before the values load
        tasks = sum(1 for key in state_dict if key.startswith(prefix + "prompts.") and key[len(prefix) + 8 :].isdigit())
        self._grow_to(tasks)
        for name in ("centers", "center_tasks"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.zeros_like(saved, device=self.centers.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def add_task_centers(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Cluster the newest task's backbone features; its ``clusters_per_task`` centers join the rest."""
        if self.num_tasks == 0:
            raise RuntimeError("adapt(0) first: there is no task to add centers for")
        centers = kmeans(nn.functional.normalize(features.float(), dim=1), self.clusters_per_task, generator)
        task = torch.full((centers.shape[0],), self.num_tasks - 1, dtype=torch.long, device=self.centers.device)
        self.centers = torch.cat([self.centers, centers.to(self.centers.device)])
        self.center_tasks = torch.cat([self.center_tasks, task])
        return centers

    # ---------------------------------------------------------------- forward
    def features(self, x: Tensor) -> Tensor:
        """The frozen backbone's [CLS] feature without prompts (what the centers cluster)."""
        with torch.no_grad():
            return self.transformer.features(x)

    def infer_task(self, x: Tensor) -> Tensor:
        """Each sample's task index by its nearest center (the newest task while there are none)."""
        if self.centers.shape[0] == 0:
            return torch.full((x.shape[0],), self.num_tasks - 1, dtype=torch.long, device=x.device)
        return nearest_task(self.features(x), self.centers, self.center_tasks)

    def forward(self, x: Tensor) -> Tensor:
        if self.num_tasks == 0:  # before any task: the backbone's feature, no prompt
            return self.heads[0](self.features(x))
        if self.training:  # the task being learned: its own prompt and head
            task = torch.full((x.shape[0],), self.num_tasks - 1, dtype=torch.long, device=x.device)
        else:
            task = self.infer_task(x)
        prompts = torch.stack(list(self.prompts))[task]  # (B, L_p, D)
        feature = self.transformer.tokens(x, prompts)[:, 0]
        if not self.per_task_classifier:
            return self.heads[0](feature)
        heads = cast("Sequence[nn.Linear]", self.heads)
        weights = torch.stack([h.weight for h in heads])[task]  # (B, C, D)
        biases = torch.stack([h.bias for h in heads])[task]
        return torch.einsum("bcd,bd->bc", weights, feature) + biases
