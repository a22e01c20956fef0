"""Pixel permutations: the input transform of Permuted-MNIST (one fixed shuffle of pixels per task).

A permutation keeps every pixel value and only moves it, so each task is as hard as MNIST itself
for an MLP while the input distribution changes completely from task to task.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_permutations(num_tasks: int, num_pixels: int, seed: int) -> Tensor:
    """``(num_tasks, num_pixels)`` int64: one uniformly random pixel order per task, fixed by ``seed``."""
    if num_tasks < 1:
        raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
    if num_pixels < 1:
        raise ValueError(f"num_pixels must be >= 1, got {num_pixels}")
    generator = torch.Generator().manual_seed(int(seed))
    return torch.stack([torch.randperm(num_pixels, generator=generator) for _ in range(num_tasks)])


def permute_pixels(images: Tensor, permutation: Tensor) -> Tensor:
    """Reorder the pixels of every image: output pixel ``k`` is input pixel ``permutation[k]``.

    ``images`` is ``(N, ...)``; the trailing dimensions are flattened, permuted and restored, so
    ``(N, 1, 28, 28)`` images keep their shape.
    """
    flat = images.reshape(images.shape[0], -1)
    permutation = torch.as_tensor(permutation, dtype=torch.long)
    if permutation.shape != (flat.shape[1],):
        raise ValueError(
            f"a permutation of {flat.shape[1]} pixels is needed for images of shape {tuple(images.shape[1:])}, "
            f"got shape {tuple(permutation.shape)}"
        )
    return flat[:, permutation.to(flat.device)].reshape(images.shape)
