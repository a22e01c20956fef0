"""``retentive demo``: Split-MNIST with DER++, run the way a retraining pipeline runs it.

Each of the five chunks is one ``update()`` in a fresh Python process that resumes from the state
folder the previous process wrote. The parent prints the accuracy matrix and the metrics, and
leaves the state folders and TensorBoard logs under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("demo_output"),
        help="folder for state folders, logs and results [demo_output]",
    )
    parser.add_argument("--memory-size", type=int, default=500, help="replay memory capacity [500]")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate [0.1]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model init and every update [0]")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process [1]")
    parser.add_argument(
        "--samples-per-chunk",
        type=int,
        default=None,
        help="train on only the first N samples of each chunk (a quick look) [all]",
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="folder with the MNIST idx files [see retentive.data.mnist]"
    )
    parser.add_argument("--chunk", type=int, default=None, help=argparse.SUPPRESS)  # the worker process


def outputs(args: argparse.Namespace) -> list[Path]:
    """The folders a run may create; a failed run removes those it left empty."""
    return [] if args.chunk is not None else [args.output]


def _state(output: Path, index: int) -> Path:
    return output / "state" / f"chunk_{index:03d}"


def _run_chunk(args: argparse.Namespace) -> int:
    """One pipeline step: resume, update on chunk ``args.chunk``, save, evaluate."""
    from functools import partial

    import torch
    from pytorch_lightning.loggers import TensorBoardLogger

    from retentive import DarkExperienceReplayModelUpdater
    from retentive.data import load_mnist, split_mnist
    from retentive.data.scenarios import concatenate
    from retentive.evaluation import accuracy_row
    from retentive.models import MLP

    torch.set_num_threads(args.threads)
    i = args.chunk
    train = split_mnist(load_mnist("train", root=args.data))
    if args.samples_per_chunk is not None:
        train = [chunk.subset(torch.arange(min(args.samples_per_chunk, len(chunk)))) for chunk in train]
    test = split_mnist(load_mnist("test", root=args.data))
    torch.manual_seed(args.seed)
    updater = DarkExperienceReplayModelUpdater(
        model=MLP(),
        loss_fn=torch.nn.CrossEntropyLoss(),
        optimizer=partial(torch.optim.SGD, lr=args.lr),
        memory_size=args.memory_size,
        batch_size=64,
        batch_memory_frac=0.5,
        alpha=0.5,
        beta=0.5,
        max_epochs=1,
        input_state_folder=_state(args.output, i - 1) if i > 0 else None,
        output_state_folder=_state(args.output, i),
        accelerator="cpu",
        devices=1,
        precision="32",
        seed=args.seed,
        logger=TensorBoardLogger(str(args.output / "tensorboard"), name="der++"),
        enable_progress_bar=False,
    )
    start = time.perf_counter()
    # validate on every chunk seen so far, so that forgetting shows in TensorBoard's val/accuracy
    model = updater.update(train[i], val_dataset=concatenate(test[: i + 1]), task_id=i)
    seconds = time.perf_counter() - start
    row = accuracy_row(model, test).tolist()
    (args.output / f"row_{i:03d}.json").write_text(json.dumps({"row": row, "seconds": seconds}))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.chunk is not None:
        return _run_chunk(args)
    if args.output.exists() and any((args.output / "state").glob("chunk_*")):
        print(f"retentive demo: error: {args.output} holds an earlier run; remove it or pass --output", file=sys.stderr)
        return 2
    from retentive.data.mnist import ensure_mnist

    ensure_mnist(args.data)  # fetched once here, before any worker starts; offline: one line, exit 1
    import torch

    from retentive.evaluation import format_matrix, summarize

    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(5):
        command = [
            sys.executable,
            "-m",
            "retentive.cli",
            "demo",
            "--chunk",
            str(i),
            "--output",
            str(args.output),
            "--memory-size",
            str(args.memory_size),
            "--lr",
            str(args.lr),
            "--seed",
            str(args.seed),
            "--threads",
            str(args.threads),
        ]
        if args.data is not None:
            command += ["--data", str(args.data)]
        if args.samples_per_chunk is not None:
            command += ["--samples-per-chunk", str(args.samples_per_chunk)]
        if getattr(args, "debug", False):
            command.append("--debug")
        begun = time.perf_counter()
        if subprocess.run(command).returncode != 0:  # the worker printed its one-line error
            return 1
        result = json.loads((args.output / f"row_{i:03d}.json").read_text())
        rows.append(result["row"])
        print(
            f"chunk {i} (digits {2 * i} and {2 * i + 1}): update {result['seconds']:.1f} s, "
            f"process {time.perf_counter() - begun:.1f} s, state -> {_state(args.output, i)}",
            flush=True,
        )
    matrix = torch.tensor(rows)
    print("\nAccuracy (%) on each chunk's test digits after each update:\n" + format_matrix(matrix))
    metrics = summarize(matrix)
    print("\n" + "  ".join(f"{name} {100 * value:.2f}%" for name, value in metrics.items()))
    print(f"\nTensorBoard: tensorboard --logdir {args.output / 'tensorboard'}")
    return 0
