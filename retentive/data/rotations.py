"""Image rotation with torch alone (no torchvision): the input transform of Rotated-MNIST.

The DER paper's Rotated-MNIST rotates every image of a task by one angle drawn uniformly from
[0, 180) degrees with torchvision's ``rotate`` (nearest-neighbour, counter-clockwise, about the
image centre, zero fill). :func:`rotate` does the same with ``affine_grid`` + ``grid_sample``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MODES = ("nearest", "bilinear")


def random_angles(num_tasks: int, seed: int, low: float = 0.0, high: float = 180.0) -> Tensor:
    """``(num_tasks,)`` float64 angles in degrees, uniform in ``[low, high)``, fixed by ``seed``."""
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    if not high > low:
        raise ValueError(f"the angle range must be non-empty, got [{low}, {high})")
    generator = torch.Generator().manual_seed(int(seed))
    return low + (high - low) * torch.rand(num_tasks, generator=generator, dtype=torch.float64)


def _grid(degrees: float, height: int, width: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The sampling grid of a counter-clockwise rotation (screen coordinates, y pointing down).

    Output pixel ``p`` reads input pixel ``R^-1 p`` about the centre; in normalised coordinates
    (``align_corners=False``) the x and y scales differ for non-square images, hence the ratios.
    """
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    matrix = torch.tensor(
        [[cos, -sin * height / width, 0.0], [sin * width / height, cos, 0.0]], dtype=dtype, device=device
    )
    return F.affine_grid(matrix.unsqueeze(0), [1, 1, height, width], align_corners=False)


def rotate(images: Tensor, degrees: float, mode: str = "nearest", batch_size: int = 8192) -> Tensor:
    """Rotate ``(N, C, H, W)`` or ``(N, H, W)`` images counter-clockwise by ``degrees``, zero fill.

    Integer images (e.g. uint8) are rotated in float32 and rounded back to their dtype, so
    ``rotate(uint8_images, a)`` matches rotating PIL images as the DER protocol does.
    """
    if mode not in MODES:
        raise ValueError(f"unknown interpolation mode {mode!r}; expected one of {MODES}")
    if images.dim() not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {tuple(images.shape)}")
    squeeze = images.dim() == 3
    batch = images.unsqueeze(1) if squeeze else images
    work_dtype = batch.dtype if batch.dtype.is_floating_point else torch.float32
    height, width = int(batch.shape[-2]), int(batch.shape[-1])
    grid = _grid(float(degrees), height, width, work_dtype, batch.device)
    out = torch.empty_like(batch)
    for start in range(0, batch.shape[0], batch_size):
        part = batch[start : start + batch_size].to(work_dtype)
        rotated = F.grid_sample(
            part, grid.expand(part.shape[0], -1, -1, -1), mode=mode, padding_mode="zeros", align_corners=False
        )
        if not batch.dtype.is_floating_point:
            info = torch.iinfo(batch.dtype)
            rotated = rotated.round().clamp_(info.min, info.max)
        out[start : start + batch_size] = rotated.to(batch.dtype)
    return out.squeeze(1) if squeeze else out
