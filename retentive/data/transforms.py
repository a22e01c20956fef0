"""Batched augmentations: one call per batch, an independent random draw per sample.

torchvision's transforms draw one set of random parameters per call, so applied to a batch they
crop every sample alike. These take the whole batch (``takes_batch = True``, see
:mod:`retentive.learner.transforms`) and draw per sample from torch's global RNG, which the
updater seeds per update (:mod:`retentive.streams`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class RandomCrop:
    """Pad each image by ``padding`` (zeros) and crop a ``size`` window at a random offset per sample."""

    takes_batch = True

    def __init__(self, size: int | tuple[int, int], padding: int = 0) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if padding < 0 or min(self.size) < 1:
            raise ValueError(f"RandomCrop needs size >= 1 and padding >= 0, got size={size}, padding={padding}")
        self.padding = int(padding)

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"RandomCrop takes a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
        padded = F.pad(x, [self.padding] * 4) if self.padding else x
        n, _, height, width = padded.shape
        h, w = self.size
        if h > height or w > width:
            raise ValueError(f"RandomCrop size {self.size} exceeds the padded image {(height, width)}")
        top = torch.randint(0, height - h + 1, (n,), device=x.device)
        left = torch.randint(0, width - w + 1, (n,), device=x.device)
        rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channels = torch.arange(padded.shape[1], device=x.device)[None, :, None, None]
        return padded[batch, channels, rows, cols]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Flip each image left-right with probability ``p``, drawn per sample."""

    takes_batch = True

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip needs 0 <= p <= 1, got {p}")
        self.p = float(p)

    def __call__(self, x: Tensor) -> Tensor:
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply batched transforms in order."""

    takes_batch = True

    def __init__(self, *transforms: object) -> None:
        self.transforms = transforms

    def __call__(self, x: Tensor) -> Tensor:
        for transform in self.transforms:
            x = transform(x)  # type: ignore[operator]
        return x
