"""A vision transformer built from a small config (Hugging Face ``transformers``; no weights
downloaded), with the one extra door prompt methods need: extra tokens in the encoder's input.

Renate's ``VisionTransformer`` takes the same architecture arguments (``image_size``,
``patch_size``, ``num_layers``, ``num_heads``, ``hidden_dim``, ``mlp_dim``, ``dropout``,
``attention_dropout``, ``num_outputs``); ``num_channels`` is added (Renate fixed it at 3, MNIST
has 1). ``transformers`` is the optional extra ``retentive[transformers]``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn


def _vit_classes() -> tuple[Any, Any]:
    try:
        from transformers import ViTConfig, ViTModel
    except ImportError as error:  # pragma: no cover - the dev extra installs it
        raise ImportError(
            "the vision transformers (VisionTransformer, LearningToPromptTransformer, SPromptTransformer) need "
            "Hugging Face transformers: pip install 'retentive[transformers]'"
        ) from error
    return ViTConfig, ViTModel


def check_positive(**values: Any) -> None:
    """Refuse any of ``values`` that is not an int >= 1 (a bool is not), naming it."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


class VisionTransformer(nn.Module):
    """ViT (Dosovitskiy et al., 2021) with random weights from a config, or local pretrained ones.

    ``forward(x)`` returns logits from the [CLS] feature; :meth:`tokens` returns the encoder's
    output tokens, optionally with ``prompts`` (``(B, P, D)`` or ``(P, D)``) inserted after [CLS]
    (the encoder is permutation-equivariant, so this is the paper's "prepend to the patches").

    Args:
        pretrained_model_name_or_path: a local directory holding a saved ``ViTModel``; it
            overrides the architecture arguments. Nothing is downloaded: a hub name that is not
            in the local cache fails. ``None`` [default]: random weights from the config.
        image_size, patch_size, num_channels: the input images ``(num_channels, size, size)``.
        num_layers, num_heads, hidden_dim, mlp_dim: the encoder.
        dropout, attention_dropout: dropout in the encoder's layers and its attention.
        num_outputs: classes of the linear head.
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
        num_channels: int = 3,
    ) -> None:
        super().__init__()
        ViTConfig, ViTModel = _vit_classes()
        check_positive(num_outputs=num_outputs)
        if pretrained_model_name_or_path is not None:
            self.backbone = ViTModel.from_pretrained(
                pretrained_model_name_or_path, add_pooling_layer=False, local_files_only=True
            )
        else:
            check_positive(
                image_size=image_size,
                patch_size=patch_size,
                num_layers=num_layers,
                num_heads=num_heads,
                hidden_dim=hidden_dim,
                mlp_dim=mlp_dim,
                num_channels=num_channels,
            )
            if image_size % patch_size:
                raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
            if hidden_dim % num_heads:
                raise ValueError(f"hidden_dim {hidden_dim} must be a multiple of num_heads {num_heads}")
            config = ViTConfig(
                hidden_size=hidden_dim,
                num_hidden_layers=num_layers,
                num_attention_heads=num_heads,
                intermediate_size=mlp_dim,
                hidden_act="gelu",
                hidden_dropout_prob=float(dropout),
                attention_probs_dropout_prob=float(attention_dropout),
                layer_norm_eps=1e-6,
                image_size=image_size,
                patch_size=patch_size,
                num_channels=num_channels,
                qkv_bias=True,
            )
            self.backbone = ViTModel(config, add_pooling_layer=False)
        self.backbone.train()  # transformers hands models over in eval mode; a torch module starts in train
        config = self.backbone.config
        self.image_shape = (int(config.num_channels), int(config.image_size), int(config.image_size))
        self.embedding_size = int(config.hidden_size)
        self.head = nn.Linear(self.embedding_size, int(num_outputs))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Fresh random weights, drawn as the config's initialiser draws them (GDumb, RD re-initialise)."""
        for module in self.backbone.modules():
            self.backbone._init_weights(module)
        self.head.reset_parameters()

    def _blocks(self) -> nn.ModuleList:
        blocks = getattr(self.backbone, "layers", None)  # transformers 5; 4.x keeps them in encoder.layer
        return blocks if blocks is not None else self.backbone.encoder.layer

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or tuple(x.shape[1:]) != self.image_shape:
            shape = tuple(x.shape[1:]) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} takes images of shape {self.image_shape}, got {shape}")

    def tokens(self, x: Tensor, prompts: Tensor | None = None) -> Tensor:
        """The encoder's normalised output tokens: ``[CLS, prompts..., patches...]``."""
        self._check_input(x)
        h = self.backbone.embeddings(x.to(self.head.weight.dtype))
        if prompts is not None:
            prompts = prompts.to(h.dtype)
            if prompts.dim() == 2:
                prompts = prompts.unsqueeze(0).expand(h.shape[0], -1, -1)
            h = torch.cat([h[:, :1], prompts, h[:, 1:]], dim=1)
        for block in self._blocks():
            out = block(h)
            h = out[0] if isinstance(out, tuple) else out
        return self.backbone.layernorm(h)

    def features(self, x: Tensor) -> Tensor:
        """The [CLS] feature without prompts (L2P's query, S-Prompts' task key)."""
        return self.tokens(x)[:, 0]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def frozen_backbone(arguments: Mapping[str, Any]) -> VisionTransformer:
    """A frozen :class:`VisionTransformer` built from the backbone arguments among ``arguments``.

    The prompt models (L2P, S-Prompts) take Renate's flat backbone arguments next to their own;
    they pass all of them here (``frozen_backbone(locals())``) and this picks the backbone's by
    name, so the backbone's argument list is read from its one signature.
    """
    names = inspect.signature(VisionTransformer).parameters
    backbone = VisionTransformer(**{name: arguments[name] for name in names})
    backbone.requires_grad_(False)
    return backbone
