"""Continual-learning evaluation: the accuracy matrix and the metrics read off it.

``A[i, j]`` is the accuracy on chunk ``j``'s test data after update ``i`` (0-based). The metric
functions are pure functions of that matrix, so they are tested against hand-computed values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from retentive.data import nested
from retentive.data.streaming import is_stream
from retentive.data.tensors import dataset_batches
from retentive.models.modes import evaluating
from retentive.models.routing import forward_routed


def chunk_classes(dataset: Dataset) -> Tensor:
    """The labels present in ``dataset`` (from ``targets`` when it has them)."""
    targets = getattr(dataset, "targets", None)
    if is_stream(dataset):  # a stream: one pass over its labels
        targets = torch.cat([torch.as_tensor(batch[1]).reshape(-1) for batch in DataLoader(dataset, batch_size=1024)])
    elif not torch.is_tensor(targets):
        targets = torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]
    return torch.unique(targets.long())


def accuracy(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    classes: Sequence[int] | Tensor | None = None,
) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (micro-averaged over samples).

    A task-routed model (:func:`retentive.models.takes_task_ids`) is called with the samples' task
    ids when the dataset yields ``(x, y, task_id)``, and with ``None`` (every head) otherwise.
    ``classes`` restricts the prediction to those labels: task-aware evaluation of a single-head
    model, as the DER paper's Task-IL figures are measured (mask the logits of other tasks).
    """
    correct = total = 0
    keep: Tensor | None = None
    with evaluating(model):
        for batch in dataset_batches(dataset, batch_size):
            x, y = nested.to(batch[0], device), batch[1].to(device).long()
            task_ids = batch[2].to(device) if len(batch) > 2 else None
            logits = forward_routed(model, x, task_ids)
            if classes is not None:
                if keep is None:
                    keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
                    keep[torch.as_tensor(classes, dtype=torch.long, device=logits.device)] = True
                logits = logits.masked_fill(~keep, float("-inf"))
            correct += int((logits.argmax(dim=-1) == y).sum())
            total += int(y.numel())
    if total == 0:
        raise ValueError("cannot measure accuracy on an empty dataset")
    return correct / total


def accuracy_row(
    model: nn.Module,
    test_chunks: Sequence[Dataset],
    batch_size: int = 1024,
    task_aware: bool = False,
    device: str | torch.device = "cpu",
) -> Tensor:
    """One row of the accuracy matrix: the model's accuracy on every chunk's test data.

    ``task_aware`` masks each chunk's prediction to the classes present in that chunk (Task-IL
    evaluation of a single-head model).
    """
    return torch.tensor(
        [
            accuracy(model, chunk, batch_size, device, classes=chunk_classes(chunk) if task_aware else None)
            for chunk in test_chunks
        ],
        dtype=torch.float64,
    )


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


def micro_average_accuracy(matrix: Tensor, counts: Sequence[int] | Tensor) -> float:
    """Accuracy over all test samples pooled after the last update: ``sum_j n_j A[T, j] / sum_j n_j``.

    Differs from :func:`average_accuracy` when the chunks' test sets differ in size.
    """
    a = _square(matrix)
    n = torch.as_tensor(counts, dtype=torch.float64)
    if n.shape != (a.shape[1],):
        raise ValueError(f"need one test-set size per chunk ({a.shape[1]}), got shape {tuple(n.shape)}")
    if bool((n < 0).any()) or float(n.sum()) <= 0:
        raise ValueError(f"test-set sizes must be >= 0 with a positive total, got {n.tolist()}")
    return float((a[-1] * n).sum() / n.sum())


def summarize(
    matrix: Tensor,
    random_init_accuracy: Sequence[float] | Tensor | None = None,
    counts: Sequence[int] | Tensor | None = None,
) -> dict[str, float]:
    """The headline metrics of a run; FWT needs the random-init accuracies, the micro-average the
    test-set sizes."""
    metrics = {
        "average_accuracy": average_accuracy(matrix),
        "forgetting": forgetting(matrix),
        "bwt": backward_transfer(matrix),
    }
    if counts is not None:
        metrics["micro_average_accuracy"] = micro_average_accuracy(matrix, counts)
    if random_init_accuracy is not None:
        metrics["fwt"] = forward_transfer(matrix, random_init_accuracy)
    return metrics


def format_matrix(matrix: Tensor) -> str:
    """The accuracy matrix (or its first rows, while updates remain) as a fixed-width table of percentages."""
    a = torch.as_tensor(matrix, dtype=torch.float64)
    if a.dim() != 2:
        raise ValueError(f"the accuracy matrix must be 2-d (updates x chunks), got shape {tuple(a.shape)}")
    header = "after update | " + " ".join(f"chunk {j:>2}" for j in range(a.shape[1]))
    rows = [f"{i:>12} | " + " ".join(f"{100 * v:8.2f}" for v in a[i].tolist()) for i in range(a.shape[0])]
    return "\n".join([header, "-" * len(header), *rows])


# ---------------------------------------------------------------- Renate's flip metrics
# Regression between two versions of a model on one test set (Yan et al., CVPR 2021; Xie et al.,
# ACL 2021), as Renate 0.5.2 defines them. A negative flip: the old model was right and the new one
# is wrong; a positive flip the reverse. Rates divide by the test-set size, impacts by the new
# model's errors (NFI) or its correct predictions (PFI).
def _flips(new_predictions: Tensor, old_predictions: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    new, old, y = (torch.as_tensor(t).reshape(-1).long() for t in (new_predictions, old_predictions, labels))
    if not new.shape == old.shape == y.shape:
        raise ValueError(
            f"new predictions, old predictions and labels must have the same length, got "
            f"{new.numel()}, {old.numel()} and {y.numel()}"
        )
    if y.numel() == 0:
        raise ValueError("flip metrics need at least one test sample")
    return new == y, old == y, y


def negative_flip_rate(new_predictions: Tensor, old_predictions: Tensor, labels: Tensor) -> float:
    """NFR: the share of test samples the old model got right and the new one gets wrong."""
    new_ok, old_ok, y = _flips(new_predictions, old_predictions, labels)
    return float((old_ok & ~new_ok).sum()) / y.numel()


def positive_flip_rate(new_predictions: Tensor, old_predictions: Tensor, labels: Tensor) -> float:
    """PFR: the share of test samples the old model got wrong and the new one gets right."""
    new_ok, old_ok, y = _flips(new_predictions, old_predictions, labels)
    return float((~old_ok & new_ok).sum()) / y.numel()


def negative_flip_impact(new_predictions: Tensor, old_predictions: Tensor, labels: Tensor) -> float:
    """NFI: negative flips over the new model's errors (0 when it makes none; Renate gives NaN)."""
    new_ok, old_ok, _ = _flips(new_predictions, old_predictions, labels)
    errors = int((~new_ok).sum())
    return float((old_ok & ~new_ok).sum()) / errors if errors else 0.0


def positive_flip_impact(new_predictions: Tensor, old_predictions: Tensor, labels: Tensor) -> float:
    """PFI: positive flips over the new model's correct predictions (0 when it has none)."""
    new_ok, old_ok, _ = _flips(new_predictions, old_predictions, labels)
    correct = int(new_ok.sum())
    return float((~old_ok & new_ok).sum()) / correct if correct else 0.0


def predictions(
    model: nn.Module, datasets: Sequence[Dataset], batch_size: int = 1024, device: str | torch.device = "cpu"
) -> tuple[Tensor, Tensor]:
    """The model's top-1 predictions and the labels over ``datasets`` pooled, in order."""
    predicted, labels = [], []
    with evaluating(model):
        for dataset in datasets:
            for batch in dataset_batches(dataset, batch_size):
                task_ids = batch[2].to(device) if len(batch) > 2 else None
                predicted.append(forward_routed(model, nested.to(batch[0], device), task_ids).argmax(dim=-1).cpu())
                labels.append(batch[1].long().cpu())
    if not labels:
        raise ValueError("flip metrics need at least one test sample")
    return torch.cat(predicted), torch.cat(labels)


def flip_metrics(
    new_model: nn.Module,
    old_model: nn.Module,
    datasets: Sequence[Dataset],
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """NFR, PFR, NFI and PFI of ``new_model`` against ``old_model`` on ``datasets`` pooled."""
    new, labels = predictions(new_model, datasets, batch_size, device)
    old, _ = predictions(old_model, datasets, batch_size, device)
    return {
        "nfr": negative_flip_rate(new, old, labels),
        "pfr": positive_flip_rate(new, old, labels),
        "nfi": negative_flip_impact(new, old, labels),
        "pfi": positive_flip_impact(new, old, labels),
    }
