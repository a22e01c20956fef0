"""Continual-learning evaluation: the accuracy matrix and the metrics read off it.

``A[i, j]`` is the accuracy on chunk ``j``'s test data after update ``i`` (0-based). The metric
functions are pure functions of that matrix, so they are tested against hand-computed values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MulticlassAccuracy


@torch.no_grad()
def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 1024, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (micro-averaged over samples)."""
    was_training = model.training
    model.eval()
    metric: MulticlassAccuracy | None = None
    try:
        for batch in DataLoader(dataset, batch_size=batch_size):
            x, y = batch[0].to(device), batch[1].to(device)
            logits = model(x)
            if metric is None:
                metric = MulticlassAccuracy(num_classes=logits.shape[-1], average="micro").to(device)
            metric.update(logits, y)
    finally:
        model.train(was_training)
    if metric is None:
        raise ValueError("cannot measure accuracy on an empty dataset")
    return float(metric.compute())


def accuracy_row(model: nn.Module, test_chunks: Sequence[Dataset], batch_size: int = 1024) -> Tensor:
    """One row of the accuracy matrix: the model's accuracy on every chunk's test data."""
    return torch.tensor([accuracy(model, chunk, batch_size) for chunk in test_chunks], dtype=torch.float64)


def _square(matrix: Tensor) -> Tensor:
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"the accuracy matrix must be square (updates x chunks), got shape {tuple(matrix.shape)}")
    return matrix


def average_accuracy(matrix: Tensor) -> float:
    """Mean accuracy over all chunks after the last update: ``mean_j A[T, j]``."""
    return float(_square(matrix)[-1].mean())


def forgetting(matrix: Tensor) -> float:
    """Mean over ``j < T`` of ``max_{k < T} A[k, j] - A[T, j]`` (0 with a single chunk)."""
    a = _square(matrix)
    t = a.shape[0] - 1
    if t == 0:
        return 0.0
    best = a[:t, :t].max(dim=0).values
    return float((best - a[t, :t]).mean())


def backward_transfer(matrix: Tensor) -> float:
    """BWT: mean over ``j < T`` of ``A[T, j] - A[j, j]`` (negative when the model forgets)."""
    a = _square(matrix)
    t = a.shape[0] - 1
    if t == 0:
        return 0.0
    return float((a[t, :t] - a.diagonal()[:t]).mean())


def forward_transfer(matrix: Tensor, random_init_accuracy: Sequence[float] | Tensor) -> float:
    """FWT: mean over ``j > 0`` of ``A[j-1, j] - b_j``, ``b_j`` a randomly initialised model's accuracy."""
    a = _square(matrix)
    b = torch.as_tensor(random_init_accuracy, dtype=torch.float64)
    if b.shape != (a.shape[0],):
        raise ValueError(f"need one baseline accuracy per chunk ({a.shape[0]}), got shape {tuple(b.shape)}")
    if a.shape[0] == 1:
        return 0.0
    idx = torch.arange(1, a.shape[0])
    return float((a[idx - 1, idx] - b[1:]).mean())


def summarize(matrix: Tensor) -> dict[str, float]:
    """The headline metrics of a run."""
    return {
        "average_accuracy": average_accuracy(matrix),
        "forgetting": forgetting(matrix),
        "bwt": backward_transfer(matrix),
    }


def format_matrix(matrix: Tensor) -> str:
    """The accuracy matrix as a fixed-width table of percentages."""
    a = _square(matrix)
    header = "after update | " + " ".join(f"chunk {j:>2}" for j in range(a.shape[1]))
    rows = [f"{i:>12} | " + " ".join(f"{100 * v:8.2f}" for v in a[i].tolist()) for i in range(a.shape[0])]
    return "\n".join([header, "-" * len(header), *rows])
