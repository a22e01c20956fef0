"""Batched augmentations: one call per batch, an independent random draw per sample.

torchvision's transforms draw one set of random parameters per call, so applied to a batch they
crop every sample alike. These take the whole batch (``takes_batch = True``, see
:mod:`retentive.learner.transforms`) and draw per sample from torch's global RNG, which the
updater seeds per update (:mod:`retentive.streams`). On a GPU the draws are made on the device
(its generator is seeded alongside), so a step transfers nothing and reads nothing back.

:func:`cifar10_train_transform` and :func:`cifar10_test_transform` are the DER paper's (and
Mammoth's) Seq-CIFAR-10 pipeline: random crop 32 with padding 4 and a horizontal flip, then the
per-channel normalisation, for new and replayed samples; the normalisation alone for evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

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


class Normalize:
    """``(x - mean) / std`` per channel (dimension 1); integer images (uint8) are scaled to [0, 1] first.

    The constants move to the batch's device and dtype once and are cached there, so a GPU step
    copies nothing from the host.
    """

    takes_batch = True

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std) or not len(mean):
            raise ValueError(f"Normalize needs one mean and one std per channel, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"Normalize needs every std > 0, got {tuple(std)}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._constants: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def _on(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        key = (device, dtype)
        if key not in self._constants:
            shape = (1, len(self.mean), 1, 1)
            mean = torch.tensor(self.mean, dtype=dtype).view(shape).to(device)
            self._constants[key] = (mean, torch.tensor(self.std, dtype=dtype).view(shape).to(device))
        return self._constants[key]

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != len(self.mean):
            raise ValueError(
                f"Normalize({len(self.mean)} channels) takes a batch of images (N, {len(self.mean)}, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            x = x.float().div_(255.0)
        mean, std = self._on(x.device, x.dtype)
        return (x - mean) / std

    def __getstate__(self) -> dict[str, object]:
        return {"mean": self.mean, "std": self.std, "_constants": {}}  # cached device tensors are not state

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Compose:
    """Apply batched transforms in order."""

    takes_batch = True

    def __init__(self, *transforms: object) -> None:
        self.transforms = transforms

    def __call__(self, x: Tensor) -> Tensor:
        for transform in self.transforms:
            x = transform(x)  # type: ignore[operator]
        return x

    def __repr__(self) -> str:
        return f"Compose({', '.join(repr(t) for t in self.transforms)})"


#: CIFAR-10's per-channel mean and standard deviation (Mammoth's seq-cifar10 constants)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2615)


def cifar10_train_transform() -> Compose:
    """The paper's augmentation for new and replayed samples: crop 32 (padding 4), flip, normalise."""
    return Compose(RandomCrop(32, padding=4), RandomHorizontalFlip(), Normalize(CIFAR10_MEAN, CIFAR10_STD))


def cifar10_test_transform() -> Normalize:
    """What evaluation (and the update-end passes) see: the normalisation alone, no augmentation."""
    return Normalize(CIFAR10_MEAN, CIFAR10_STD)
