"""Split-MNIST DER++: a learning-rate search per chunk (Syne Tune, 6 trials, 2 workers) against
the fixed default learning rate of configs/der.yaml; final accuracy and wall time per seed.

    nice -n 10 .venv/bin/python benchmarks/hpo.py --seeds 0 1 2 --out benchmarks/results/hpo.json

Each chunk's training data is 90% of its MNIST training digits; the other 10% is its validation
split, and the search validates on the splits of every chunk seen so far. Both arms run
configs/der.yaml as shipped (SGD lr 0.1, memory 500, 32 new + 32 memory samples, 1 epoch) with
the seed and no logger; the searched arm draws lr from loguniform(0.003, 0.5). Final accuracy is
the mean over the five chunks' MNIST test digits after the last update (class-incremental).
One torch thread per trial and per fixed run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "der.yaml"


def write_chunks(folder: Path, seed: int) -> list[dict[str, Path]]:
    """Per chunk: train .npz, a folder of the validation .npz of every chunk so far, and test data."""
    from retentive.data import load_mnist_arrays

    images, labels = load_mnist_arrays("train")
    test_images, test_labels = load_mnist_arrays("test")
    generator = torch.Generator().manual_seed(seed)
    chunks = []
    for i, classes in enumerate([(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]):
        index = torch.nonzero((labels == classes[0]) | (labels == classes[1])).flatten()
        index = index[torch.randperm(len(index), generator=generator)]
        n_val = len(index) // 10
        val_index, train_index = index[:n_val].sort().values, index[n_val:].sort().values
        paths = {"train": folder / f"train_{i}.npz", "val": folder / f"val_upto_{i}", "test": folder / f"test_{i}.npz"}
        np.savez(paths["train"], inputs=images[train_index].numpy(), targets=labels[train_index].numpy())
        paths["val"].mkdir()
        if i > 0:
            for old in chunks[-1]["val"].iterdir():
                shutil.copy(old, paths["val"] / old.name)
        np.savez(paths["val"] / f"val_{i}.npz", inputs=images[val_index].numpy(), targets=labels[val_index].numpy())
        test = torch.nonzero((test_labels == classes[0]) | (test_labels == classes[1])).flatten()
        np.savez(paths["test"], inputs=test_images[test].numpy(), targets=test_labels[test].numpy())
        chunks.append(paths)
    return chunks


def final_accuracy(state: Path, chunks: list[dict[str, Path]], seed: int) -> float:
    from retentive.cli.config import build_updater, load_config
    from retentive.data.files import read_chunk
    from retentive.evaluation import accuracy
    from retentive.state import load_state

    model = build_updater(load_config(CONFIG, [f"seed={seed}", "logger=false"])).model
    model.load_state_dict(load_state(state).model)
    return statistics.mean(accuracy(model, read_chunk(c["test"])) for c in chunks)


def fixed_arm(chunks: list[dict[str, Path]], states: Path, seed: int) -> Path:
    from retentive.cli.config import build_updater, load_config
    from retentive.data.files import read_chunk
    from retentive.quiet import quiet_lightning

    previous = None
    for i, chunk in enumerate(chunks):
        output = states / f"fixed_{i}"
        updater = build_updater(
            load_config(CONFIG, [f"seed={seed}", "logger=false"]),
            input_state_folder=previous,
            output_state_folder=output,
        )
        with quiet_lightning():
            updater.update(read_chunk(chunk["train"]))
        previous = output
    return previous


def searched_arm(
    chunks: list[dict[str, Path]], states: Path, seed: int, trials: int, workers: int
) -> tuple[Path, list]:
    from syne_tune.config_space import loguniform

    from retentive.training.yaml_job import tune_yaml

    previous, winners = None, []
    for i, chunk in enumerate(chunks):
        output = states / f"searched_{i}"
        result = tune_yaml(
            CONFIG,
            {"optimizer.init_args.lr": loguniform(0.003, 0.5)},
            chunk["train"],
            chunk["val"],
            output,
            input_state=previous,
            overrides=[f"seed={seed}", "logger=false"],
            n_workers=workers,
            max_trials=trials,
            seed=seed + 100 * i,
            threads=1,
        )
        winners.append(
            {
                "chunk": i,
                "lr": result.winner.config["optimizer.init_args.lr"],
                "val_accuracy": result.winner.best(result.metric, result.mode),
                "trials": [t.config.get("optimizer.init_args.lr") for t in result.trials],
                "scores": [t.best(result.metric, result.mode) for t in result.trials],
            }
        )
        previous = output
    return previous, winners


def run_seed(seed: int, trials: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as tmp:
        folder = Path(tmp)
        chunks = write_chunks(folder, seed)
        start = time.perf_counter()
        fixed = fixed_arm(chunks, folder, seed)
        fixed_seconds = time.perf_counter() - start
        start = time.perf_counter()
        searched, winners = searched_arm(chunks, folder, seed, trials, workers)
        searched_seconds = time.perf_counter() - start
        return {
            "seed": seed,
            "fixed_accuracy": final_accuracy(fixed, chunks, seed),
            "fixed_seconds": fixed_seconds,
            "searched_accuracy": final_accuracy(searched, chunks, seed),
            "searched_seconds": searched_seconds,
            "winners": winners,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hpo.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("RETENTIVE_DATA", "/work/shared/data")
    results = []
    for seed in args.seeds:
        row = run_seed(seed, args.trials, args.workers)
        results.append(row)
        print(
            f"seed {seed}: fixed lr 0.1 {100 * row['fixed_accuracy']:.2f}% in {row['fixed_seconds']:.0f} s; "
            f"searched {100 * row['searched_accuracy']:.2f}% in {row['searched_seconds']:.0f} s; winners "
            f"{[round(w['lr'], 4) for w in row['winners']]}",
            flush=True,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"trials": args.trials, "workers": args.workers, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
