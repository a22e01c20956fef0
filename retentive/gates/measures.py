"""What a gate measures: the candidate and the current model on every held-out chunk seen so far.

One forward pass per model and chunk gives both the accuracies and the negative flips
(:mod:`retentive.evaluation`'s definitions); the new chunk is the last one measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from retentive.evaluation import negative_flip_rate, predictions


@dataclass(frozen=True)
class ChunkMeasure:
    """One held-out chunk: its name, size, the candidate's and the current model's accuracy
    (``None`` without a current model) and the candidate's negative flip rate against it."""

    chunk: str
    samples: int
    candidate: float
    current: float | None
    negative_flip_rate: float | None

    @property
    def drop_in_points(self) -> float | None:
        """How many accuracy points the candidate loses against the current model (negative: gains);
        rounded to 1e-9 points so that a drop exactly at a limit (5 of 100 samples: 5 points) meets it."""
        return None if self.current is None else round(100.0 * (self.current - self.candidate), 9)


@dataclass(frozen=True)
class Measures:
    """Every chunk's measures, the new chunk last, and the negative flip rate over all of them pooled."""

    chunks: tuple[ChunkMeasure, ...]
    negative_flip_rate: float | None

    @property
    def new_chunk(self) -> ChunkMeasure:
        return self.chunks[-1]

    @property
    def earlier_chunks(self) -> tuple[ChunkMeasure, ...]:
        return self.chunks[:-1]

    def drops_in_points(self) -> dict[str, float]:
        """The drop on each earlier chunk that the current model was measured on."""
        return {c.chunk: c.drop_in_points for c in self.earlier_chunks if c.drop_in_points is not None}


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def measure(
    candidate: nn.Module,
    current: nn.Module | None,
    heldout: Sequence[tuple[str, Dataset]],
    batch_size: int = 1024,
) -> Measures:
    """Measure ``candidate`` (and ``current``, if any) on each named held-out chunk, the new one last."""
    if not heldout:
        raise ValueError("a gate needs held-out data for at least the new chunk")
    chunks, new_all, old_all, labels_all = [], [], [], []
    for name, dataset in heldout:
        new, labels = predictions(candidate, [dataset], batch_size, _device(candidate))
        right = (new == labels).double().mean().item()
        current_accuracy = nfr = None
        if current is not None:
            old, _ = predictions(current, [dataset], batch_size, _device(current))
            current_accuracy = (old == labels).double().mean().item()
            nfr = negative_flip_rate(new, old, labels)
            old_all.append(old)
        new_all.append(new)
        labels_all.append(labels)
        chunks.append(ChunkMeasure(str(name), int(labels.numel()), right, current_accuracy, nfr))
    pooled = None
    if current is not None:
        pooled = negative_flip_rate(torch.cat(new_all), torch.cat(old_all), torch.cat(labels_all))
    return Measures(tuple(chunks), pooled)
