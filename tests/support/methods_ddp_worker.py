"""A real 2-process DDP run on CPU (gloo) of the regularisation, distillation and projection
updaters, for tests/ddp/test_regularisation_updaters_ddp.py (which starts it in a subprocess).

Lightning's ``strategy="ddp"`` runs this script again for rank 1. Each method runs two updates
of two epochs (chunk 0 from scratch, chunk 1 resuming its state folder) on a batch-norm MLP;
after each, every rank dumps its model, learner state and memory to
``OUT/<method><update>.rank<r>.pt``.

    python tests/support/methods_ddp_worker.py --out DIR
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parents[1]),
]  # support/, tests/ (conftest)

from ddp_worker import build_model, dump  # noqa: E402

METHODS = ("agem", "gem", "ewc_er", "si", "lwf", "icarl")


def make(method: str, input_state: Path | None, output_state: Path):
    import retentive as R

    torch.manual_seed(0)
    common = dict(
        input_state_folder=input_state,
        output_state_folder=output_state,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_progress_bar=False,
        max_epochs=2,  # an epoch boundary (the sampler reshuffles, epoch hooks run again), not Renate's 50
        seed=0,
    )
    optimizer = partial(torch.optim.SGD, lr=0.05)
    loss = nn.CrossEntropyLoss()
    if method == "agem":
        return R.AveragedGradientEpisodicMemoryModelUpdater(
            build_model(), loss, optimizer, memory_size=100, sample_size=32, batch_size=32, **common
        )
    if method == "gem":
        return R.GradientEpisodicMemoryModelUpdater(
            build_model(), loss, optimizer, memory_size=100, batch_size=32, **common
        )
    if method == "ewc_er":
        components = [R.MemoryCrossEntropy(1.0), R.ElasticWeightConsolidation(1.0)]
        return R.ModelUpdater(
            build_model(), loss, optimizer, components=components, memory_size=100, batch_size=32, **common
        )
    if method == "si":
        return R.SynapticIntelligenceModelUpdater(build_model(), loss, optimizer, batch_size=32, **common)
    if method == "lwf":
        return R.LearningWithoutForgettingModelUpdater(build_model(), loss, optimizer, batch_size=32, **common)
    return R.ICaRLModelUpdater(
        build_model(), loss, optimizer, memory_size=100, batch_size=32, feature_layer="3", **common
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from conftest import small_split

    from retentive.data import load_mnist

    data = [c.subset(torch.arange(300)) for c in small_split(load_mnist("train"), 1000)[:2]]
    for method in METHODS:
        previous = None
        for i in range(2):
            folder = args.out / f"{method}{i}"
            print("running", method, i, flush=True)
            updater = make(method, previous, folder)
            dump(args.out, f"{method}{i}", updater, None, updater.update(data[i], task_id=i))
            previous = folder


if __name__ == "__main__":
    main()
