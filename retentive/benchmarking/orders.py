"""Task-order sensitivity: the same chunks presented easy->hard, hard->easy, or shuffled.

How hard a chunk is is measured, not assumed: a probe model (same architecture, fresh init) is
trained jointly on a slice of every chunk's *training* data and scored on another, disjoint slice
of each chunk; a chunk's difficulty is the probe's error on it. A joint probe ranks a chunk by how
hard it is to tell apart from all the others, which is what matters once they share a model. The
test data is never looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor

from retentive.benchmarking.scenarios import Scenario
from retentive.data.scenarios import concatenate
from retentive.data.tensors import TensorChunk
from retentive.evaluation import accuracy
from retentive.quiet import quiet_lightning

ORDERS = ("given", "easy-hard", "hard-easy", "random")


def _split(chunk: TensorChunk, fit: int, score: int, generator: torch.Generator) -> tuple[TensorChunk, TensorChunk]:
    index = torch.randperm(len(chunk), generator=generator)
    fit = min(fit, len(chunk) // 2)
    return chunk.subset(index[:fit]), chunk.subset(index[fit : fit + score])


def chunk_difficulty(
    scenario: Scenario,
    seed: int = 0,
    fit_per_chunk: int = 1000,
    score_per_chunk: int = 1000,
    epochs: int = 2,
    lr: float = 0.05,
) -> Tensor:
    """Error in [0, 1] of a joint probe on each chunk (float64, one entry per chunk)."""
    from retentive.updaters.baselines import FineTuningModelUpdater

    generator = torch.Generator().manual_seed(int(seed))
    fits, scores = [], []
    for chunk in scenario.train:
        fit, score = _split(chunk, fit_per_chunk, score_per_chunk, generator)
        fits.append(fit)
        scores.append(score)
    torch.manual_seed(int(seed))
    probe = scenario.model_factory()
    with quiet_lightning():
        FineTuningModelUpdater(
            probe,
            torch.nn.CrossEntropyLoss(),
            partial(torch.optim.SGD, lr=lr),
            batch_size=32,
            max_epochs=epochs,
            seed=seed,
            logger=False,
            enable_progress_bar=False,
            accelerator="cpu",
            devices=1,
        ).update(concatenate(fits))
    return torch.tensor([1.0 - accuracy(probe, score) for score in scores], dtype=torch.float64)


def task_order(kind: str, difficulty: Tensor | Sequence[float] | None, num_chunks: int, seed: int = 0) -> list[int]:
    """The chunk indices in the order ``kind``: ``given``, ``easy-hard`` (ascending difficulty),
    ``hard-easy`` (descending) or ``random`` (a permutation fixed by ``seed``). Ties keep the
    given order."""
    if kind == "given":
        return list(range(num_chunks))
    if kind == "random":
        return torch.randperm(num_chunks, generator=torch.Generator().manual_seed(int(seed))).tolist()
    if kind not in ORDERS:
        raise ValueError(f"unknown task order {kind!r}; expected one of {ORDERS}")
    if difficulty is None:
        raise ValueError(f"task order {kind!r} needs the chunks' difficulty")
    d = torch.as_tensor(difficulty, dtype=torch.float64)
    if d.shape != (num_chunks,):
        raise ValueError(f"need one difficulty per chunk ({num_chunks}), got shape {tuple(d.shape)}")
    ascending = torch.sort(d, stable=True).indices.tolist()
    if kind == "easy-hard":
        return ascending
    return torch.sort(-d, stable=True).indices.tolist()
