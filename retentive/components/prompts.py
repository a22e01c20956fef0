"""Components of the prompt methods: L2P's key-query surrogate and S-Prompts' task prototypes."""

from __future__ import annotations

import torch
from torch import Tensor

from retentive.components.base import Component, StepContext, UpdateContext
from retentive.models.l2p import LearningToPromptTransformer
from retentive.models.protocol import prompt_query_loss
from retentive.models.sprompts import SPromptTransformer


class PromptKeyQueryLoss(Component):
    """L2P's ``lambda * sum_i (1 - cos(q(x), k_i))`` over the selected keys, averaged over the batch.

    The model computes the term in the step's forward (it owns the query and the selection), so
    this reads ``model.key_query_loss``. As in Renate the term is added after the loss
    normaliser (``normalized = False``). Renate adds ``-lambda * sum_i cos(q, k_i)``: the same
    gradient, shifted by the constant ``lambda * N``.
    """

    normalized = False

    def __init__(self, weight: float = 0.5) -> None:
        super().__init__(weight)

    def on_update_start(self, ctx: UpdateContext) -> None:
        if not isinstance(ctx.model, LearningToPromptTransformer):
            raise TypeError(f"PromptKeyQueryLoss needs a LearningToPromptTransformer, got {type(ctx.model).__name__}")

    def loss(self, ctx: StepContext) -> Tensor | None:
        return prompt_query_loss(ctx.model)


class TaskPrototypes(Component):
    """S-Prompts' task keys: when an update starts, cluster the frozen backbone's features of the
    whole chunk (k-means, the model's ``clusters_per_task`` centers) into the newest task's centers.
    The chunk's inputs are clustered as given (no transform), one pass without gradients.

    The backbone is frozen, so the features are those the trained model will see; clustering at
    the start (as Renate does) lets validation during the update route samples to this task.
    """

    def __init__(self) -> None:
        super().__init__(weight=0.0)

    def on_update_start(self, ctx: UpdateContext) -> None:
        model = ctx.model
        if not isinstance(model, SPromptTransformer):
            raise TypeError(f"TaskPrototypes needs an SPromptTransformer, got {type(model).__name__}")
        features = [model.features(batch.inputs.to(ctx.device)) for batch in ctx.chunk_batches(256)]
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=ctx.generator)))
        model.add_task_centers(torch.cat(features), generator)
