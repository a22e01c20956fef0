"""What a release gate costs: the seconds its evaluation adds to each update of an MNIST pipeline.

Five chunks of real MNIST training digits arrive one after another (all ten classes in each: a
retraining pipeline's new data), the third with its labels permuted (harmful). Each update runs
Experience Replay (MLP 784-100-100-10, memory 500, one epoch, batch 64) under a gate (max drop 5
points on any earlier chunk, min new-chunk accuracy 0.5, max negative flip rate 0.1) holding out
10 % of each chunk. The gate's evaluation time (both models on every held-out chunk so far, and
the criteria: ``GateReport.seconds``) is read per update, next to the whole update's time and
that of the same pipeline without a gate (which trains on all of each chunk, the harmful one
included); the medians over ``--repeats`` runs (seeds 0, 1, ...) are printed per update. The harmful chunk must be rejected in
every run, the others promoted. Run (one torch thread):

    python benchmarks/gate_cost.py --repeats 5
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from functools import partial

import torch
from quiet_cpu import QUIET_CPU
from torch import nn

from retentive import ExperienceReplayModelUpdater
from retentive.data import TensorChunk, load_mnist
from retentive.gates import Gate, GateRejected
from retentive.models import MLP

#: the labels of the harmful chunk, permuted (every class moved)
PERMUTATION = torch.tensor([3, 7, 1, 9, 0, 5, 2, 8, 4, 6])
CRITERIA = {"max_drop": 5.0, "min_new_accuracy": 0.5, "max_negative_flip_rate": 0.1}


def pipeline_chunks(
    mnist: TensorChunk, chunks: int = 5, per_chunk: int = 12000, harmful: int = 2, seed: int = 0
) -> list[TensorChunk]:
    """``chunks`` disjoint random slices of ``mnist``; chunk ``harmful`` with its labels permuted."""
    order = torch.randperm(len(mnist), generator=torch.Generator().manual_seed(seed))
    if chunks * per_chunk > len(mnist):
        raise ValueError(f"{chunks} chunks of {per_chunk} need more than the {len(mnist)} samples given")
    slices = [mnist.subset(order[i * per_chunk : (i + 1) * per_chunk]) for i in range(chunks)]
    bad = slices[harmful]
    slices[harmful] = TensorChunk(bad.inputs, PERMUTATION[bad.targets])
    return slices


def make_updater(seed: int = 0, **overrides: object) -> ExperienceReplayModelUpdater:
    """The pipeline's updater: ER on an MLP, one epoch per chunk, quiet."""
    torch.manual_seed(seed)
    settings: dict[str, object] = {
        "model": MLP(in_features=784, hidden=[100, 100], num_classes=10),
        "loss_fn": nn.CrossEntropyLoss(),
        "optimizer": partial(torch.optim.SGD, lr=0.1),
        "memory_size": 500,
        "batch_size": 64,
        "max_epochs": 1,
        **QUIET_CPU,
        "seed": seed,
        **overrides,
    }
    return ExperienceReplayModelUpdater(**settings)  # type: ignore[arg-type]


def run_pipeline(chunks: list[TensorChunk], holdout: float | None, seed: int) -> list[tuple[str, float, float, int]]:
    """One pass over the chunks (``holdout=None``: no gate): per update, the decision, the gate's
    evaluation seconds, the whole update's seconds and the held-out samples evaluated."""
    updater = make_updater(seed)
    gate = None if holdout is None else Gate(CRITERIA, holdout=holdout)
    rows = []
    for chunk in chunks:
        begun = time.perf_counter()
        try:
            updater.update(chunk, gate=gate)
            report = updater.gate_report
        except GateRejected as rejected:
            report = rejected.report
        seconds = time.perf_counter() - begun
        if report is None:
            rows.append(("ungated", 0.0, seconds, 0))
        else:
            rows.append((report.decision, report.seconds, seconds, sum(c.samples for c in report.measures.chunks)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-chunk", type=int, default=12000)
    parser.add_argument("--holdout", type=float, default=0.1)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    chunks = pipeline_chunks(load_mnist("train"), per_chunk=args.per_chunk)
    gated = [run_pipeline(chunks, args.holdout, seed) for seed in range(args.repeats)]
    plain = [run_pipeline(chunks, None, seed) for seed in range(args.repeats)]
    print(f"{len(chunks)} chunks of {args.per_chunk} (chunk 2 permuted), holdout {args.holdout}, {args.repeats} runs")
    print("update | decisions | held-out | gate s (median) | gated update s | ungated update s | gate share")
    for index in range(len(chunks)):
        decisions = "/".join(sorted({run[index][0] for run in gated}))
        gate_s = statistics.median(run[index][1] for run in gated)
        update_s = statistics.median(run[index][2] for run in gated)
        plain_s = statistics.median(run[index][2] for run in plain)
        held = statistics.median(run[index][3] for run in gated)
        print(
            f"{index:>6} | {decisions:<9} | {held:8.0f} | {gate_s:15.3f} | {update_s:14.2f} | {plain_s:16.2f} | "
            f"{100 * gate_s / update_s:8.1f} %"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
