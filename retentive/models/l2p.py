"""Learning to Prompt (Wang et al., CVPR 2022): a frozen ViT steered by prompts chosen from a pool.

The pool holds ``M`` prompts ``P_m`` (``L_p`` tokens each) with learnable keys ``k_m``. For an
input ``x`` the query ``q(x)`` is the frozen backbone's [CLS] feature (no prompts); the ``N``
keys most cosine-similar to it select their prompts, which join the patch tokens in a second
pass; the classifier reads the mean of the prompt tokens' outputs. Training minimises

    L = CE(f(x; P_s), y) + lambda * sum_{i in s(x)} (1 - cos(q(x), k_i))

(the paper's surrogate, :func:`key_query_loss`; ``lambda`` is the updater's
``prompt_sim_loss_weight``). With ``per_batch_prompt`` (the authors' "batchwise prompt", Renate's
default) the whole batch uses the ``N`` prompts chosen most often in it.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from retentive.models.vit import check_positive, frozen_backbone

PROMPT_FEATURES = ("cls", "mean")
POOLERS = ("prompt_mean", "cls", "mean")


def cosine_similarity_matrix(query: Tensor, keys: Tensor) -> Tensor:
    """``S[b, m] = cos(query_b, keys_m)`` for a ``(B, D)`` query and ``(M, D)`` keys."""
    return nn.functional.normalize(query, dim=1) @ nn.functional.normalize(keys, dim=1).t()


def select_prompts(similarity: Tensor, n: int, per_batch: bool) -> Tensor:
    """The ``(B, n)`` prompt indices: each row's top-``n`` keys by similarity, or, ``per_batch``,
    the ``n`` prompts selected most often over the batch (ties to the lower index) for every row."""
    idx = similarity.topk(n, dim=1).indices
    if not per_batch:
        return idx
    flat = idx.flatten()  # counted by scatter, not bincount: no wait on the host for the size
    counts = torch.zeros(similarity.shape[1], dtype=torch.long, device=idx.device).scatter_add_(
        0, flat, torch.ones_like(flat)
    )
    major = torch.sort(counts, descending=True, stable=True).indices[:n]
    return major.unsqueeze(0).expand(similarity.shape[0], -1)


def key_query_loss(similarity: Tensor, idx: Tensor) -> Tensor:
    """The surrogate ``mean_b sum_{i in idx_b} (1 - S[b, i])`` that pulls chosen keys to queries."""
    return (1.0 - similarity.gather(1, idx)).sum(dim=1).mean()


class LearningToPromptTransformer(nn.Module):
    """A frozen :class:`~retentive.models.VisionTransformer`, an L2P prompt pool and a linear head.

    Only the prompts, their keys and the head train. After each forward in which prompts were
    chosen by similarity, ``key_query_loss`` holds that batch's surrogate (the updater's
    ``PromptKeyQueryLoss`` adds it to the loss).

    Args:
        pretrained_model_name_or_path, image_size, patch_size, num_layers, num_heads, hidden_dim,
            mlp_dim, dropout, attention_dropout, num_channels: the backbone (see
            :class:`~retentive.models.VisionTransformer`).
        num_outputs: classes of the head.
        pool_size: ``M`` [10]; pool_selection_size: ``N`` [5]; prompt_size: ``L_p`` [5] (Renate's).
        prompt_key_dim: the keys' size; must equal the backbone's hidden size [that size].
        train_prompt_keys: whether the keys learn [True].
        similarity_fn: ``"cosine"`` (the only one, as in Renate).
        per_batch_prompt: one prompt set per batch, by majority [True].
        prompt_embedding_features: the query: ``"cls"`` [the paper's] or ``"mean"`` of the patches.
        patch_pooler: what the head reads: ``"prompt_mean"`` [the paper's], ``"cls"`` or ``"mean"``.
    """

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
        pool_size: int = 10,
        pool_selection_size: int = 5,
        prompt_size: int = 5,
        prompt_key_dim: int | None = None,
        train_prompt_keys: bool = True,
        similarity_fn: str = "cosine",
        per_batch_prompt: bool = True,
        prompt_embedding_features: str = "cls",
        patch_pooler: str = "prompt_mean",
        num_channels: int = 3,
    ) -> None:
        super().__init__()
        if similarity_fn != "cosine":
            raise ValueError(f"similarity_fn must be 'cosine' (the only one L2P defines), got {similarity_fn!r}")
        if prompt_embedding_features not in PROMPT_FEATURES:
            raise ValueError(
                f"prompt_embedding_features must be one of {PROMPT_FEATURES}, got {prompt_embedding_features!r}"
            )
        if patch_pooler not in POOLERS:
            raise ValueError(f"patch_pooler must be one of {POOLERS}, got {patch_pooler!r}")
        check_positive(pool_size=pool_size, pool_selection_size=pool_selection_size, prompt_size=prompt_size)
        if pool_selection_size > pool_size:
            raise ValueError(f"pool_selection_size {pool_selection_size} exceeds pool_size {pool_size}")
        self.transformer = frozen_backbone(locals())
        d = self.transformer.embedding_size
        if prompt_key_dim is not None and prompt_key_dim != d:
            raise ValueError(
                f"prompt_key_dim {prompt_key_dim} must equal the backbone's hidden size {d} (keys meet [CLS] features)"
            )
        self.pool_selection_size = pool_selection_size
        self.per_batch_prompt = bool(per_batch_prompt)
        self.prompt_embedding_features = prompt_embedding_features
        self.patch_pooler = patch_pooler
        self.prompt_pool = nn.Parameter(torch.empty(pool_size, prompt_size, d).uniform_(-1, 1))  # Renate's init
        self.prompt_keys = nn.Parameter(
            torch.empty(pool_size, d).uniform_(-1, 1), requires_grad=bool(train_prompt_keys)
        )
        self.head = nn.Linear(d, num_outputs)
        self.key_query_loss: Tensor | None = None

    def query(self, x: Tensor) -> Tensor:
        """``q(x)``: the frozen backbone's feature of ``x`` without prompts (no gradient)."""
        with torch.no_grad():
            tokens = self.transformer.tokens(x)
        return tokens[:, 0] if self.prompt_embedding_features == "cls" else tokens[:, 1:].mean(dim=1)

    def forward(self, x: Tensor, prompt_indices: Tensor | None = None) -> Tensor:
        """Logits; ``prompt_indices`` ``(B, N)`` picks the prompts by hand (no surrogate then)."""
        if prompt_indices is None:
            similarity = cosine_similarity_matrix(self.query(x), self.prompt_keys)
            prompt_indices = select_prompts(similarity.detach(), self.pool_selection_size, self.per_batch_prompt)
            self.key_query_loss = key_query_loss(similarity, prompt_indices)
        prompts = self.prompt_pool[prompt_indices].flatten(1, 2)  # (B, N * L_p, D)
        tokens = self.transformer.tokens(x, prompts)
        if self.patch_pooler == "prompt_mean":
            pooled = tokens[:, 1 : 1 + prompts.shape[1]].mean(dim=1)
        elif self.patch_pooler == "cls":
            pooled = tokens[:, 0]
        else:
            pooled = tokens[:, 1:].mean(dim=1)
        return self.head(pooled)
