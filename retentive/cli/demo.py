"""``retentive demo``: Split-MNIST (or Seq-CIFAR-10) with DER++, run the way a retraining pipeline runs it.

Each of the five chunks is one ``update()`` in a fresh Python process that resumes from the state
folder the previous process wrote. The parent prints the accuracy matrix and the metrics, and
leaves the state folders and TensorBoard logs under ``--output``.

``--dataset cifar10`` runs Seq-CIFAR-10 the DER paper's way, shrunk to stay short on a CPU: a
narrow ResNet-18 (``--nf``, 64 in the paper), uint8 images cropped, flipped and normalised per
batch on the training device (new and replayed samples alike), DER++ at alpha 0.2, beta 0.5, lr
0.03, on the ``--samples-per-chunk`` random images of each chunk.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Per dataset: the settings that differ (the DER paper's for each), and how a chunk is named.
SETTINGS: dict[str, dict[str, Any]] = {
    "mnist": {"lr": 0.1, "alpha": 0.5, "beta": 0.5, "samples": None, "test": None},
    "cifar10": {"lr": 0.03, "alpha": 0.2, "beta": 0.5, "samples": 1000, "test": 200},
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("demo_output"),
        help="folder for state folders, logs and results [demo_output]",
    )
    parser.add_argument(
        "--dataset", choices=sorted(SETTINGS), default="mnist", help="Split-MNIST or Seq-CIFAR-10 [mnist]"
    )
    parser.add_argument("--memory-size", type=int, default=500, help="replay memory capacity [500]")
    parser.add_argument("--lr", type=float, default=None, help="SGD learning rate [0.1 MNIST, 0.03 CIFAR-10]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model init and every update [0]")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process [1]")
    parser.add_argument(
        "--samples-per-chunk",
        type=int,
        default=None,
        help="train on N random samples of each chunk (a quick look) [all MNIST, 1000 CIFAR-10]",
    )
    parser.add_argument(
        "--test-per-chunk",
        type=int,
        default=None,
        help="test on N random samples of each chunk [all MNIST, 200 CIFAR-10]",
    )
    parser.add_argument("--nf", type=int, default=8, help="CIFAR-10: ResNet-18's base width (64 in the paper) [8]")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder with the MNIST idx files or CIFAR-10 [see retentive.data.mnist, retentive.data.cifar]",
    )
    parser.add_argument("--chunk", type=int, default=None, help=argparse.SUPPRESS)  # the worker process


def outputs(args: argparse.Namespace) -> list[Path]:
    """The folders a run may create; a failed run removes those it left empty."""
    return [] if args.chunk is not None else [args.output]


def _state(output: Path, index: int) -> Path:
    return output / "state" / f"chunk_{index:03d}"


def _setting(args: argparse.Namespace, name: str) -> Any:
    """An option as given, else the dataset's default."""
    given = {"lr": args.lr, "samples": args.samples_per_chunk, "test": args.test_per_chunk}.get(name)
    return given if given is not None else SETTINGS[args.dataset][name]


def _some(chunks: list[Any], n: int | None) -> list[Any]:
    """At most ``n`` samples of each chunk, drawn at random (an image folder lists a class at a time)."""
    from retentive.data import subsample

    return [subsample(chunk, n, seed=i) for i, chunk in enumerate(chunks)]


def _workload(args: argparse.Namespace) -> tuple[list[Any], list[Any], list[Any], Any, dict[str, Any]]:
    """``(train chunks, validation chunks, evaluation chunks, model, updater extras)`` of the dataset.

    CIFAR-10's chunks stay uint8 (4x less memory and host-to-device traffic); the updater's
    transforms make floats per batch, and evaluation reads normalised copies of the test chunks.
    """
    from retentive.data import TensorChunk, cifar10, load_mnist, seq_cifar10, split_mnist

    samples, test_n = _setting(args, "samples"), _setting(args, "test")
    if args.dataset == "mnist":
        from retentive.models import MLP

        test = _some(split_mnist(load_mnist("test", root=args.data)), test_n)
        return _some(split_mnist(load_mnist("train", root=args.data)), samples), test, test, MLP(), {}
    from retentive.data.transforms import cifar10_test_transform, cifar10_train_transform
    from retentive.models import ResNet18

    train = _some(seq_cifar10(cifar10(args.data, train=True)), samples)
    test = _some(seq_cifar10(cifar10(args.data, train=False)), test_n)
    normalise = cifar10_test_transform()
    evaluated = [TensorChunk(normalise(chunk.inputs), chunk.targets) for chunk in test]
    extras = {"train_transform": cifar10_train_transform(), "test_transform": cifar10_test_transform()}
    return train, test, evaluated, ResNet18(nf=args.nf), extras


def _run_chunk(args: argparse.Namespace) -> int:
    """One pipeline step: resume, update on chunk ``args.chunk``, save, evaluate."""
    from functools import partial

    import torch
    from pytorch_lightning.loggers import TensorBoardLogger

    from retentive import DarkExperienceReplayModelUpdater
    from retentive.data.scenarios import concatenate
    from retentive.evaluation import accuracy_row

    torch.set_num_threads(args.threads)
    i = args.chunk
    torch.manual_seed(args.seed)
    train, test, evaluated, model, extras = _workload(args)
    updater = DarkExperienceReplayModelUpdater(
        model=model,
        loss_fn=torch.nn.CrossEntropyLoss(),
        optimizer=partial(torch.optim.SGD, lr=_setting(args, "lr")),
        memory_size=args.memory_size,
        batch_size=64,
        batch_memory_frac=0.5,
        alpha=_setting(args, "alpha"),
        beta=_setting(args, "beta"),
        max_epochs=1,
        input_state_folder=_state(args.output, i - 1) if i > 0 else None,
        output_state_folder=_state(args.output, i),
        accelerator="cpu",
        devices=1,
        precision="32",
        seed=args.seed,
        logger=TensorBoardLogger(str(args.output / "tensorboard"), name="der++"),
        enable_progress_bar=False,
        **extras,
    )
    start = time.perf_counter()
    # validate on every chunk seen so far, so that forgetting shows in TensorBoard's val/accuracy
    model = updater.update(train[i], val_dataset=concatenate(test[: i + 1]), task_id=i)
    seconds = time.perf_counter() - start
    row = accuracy_row(model, evaluated).tolist()
    (args.output / f"row_{i:03d}.json").write_text(json.dumps({"row": row, "seconds": seconds}))
    return 0


def _worker_command(args: argparse.Namespace, i: int) -> list[str]:
    command = [sys.executable, "-m", "retentive.cli", "demo", "--chunk", str(i), "--output", str(args.output)]
    command += ["--dataset", args.dataset, "--memory-size", str(args.memory_size), "--seed", str(args.seed)]
    command += ["--threads", str(args.threads), "--nf", str(args.nf)]
    for flag, value in (
        ("--lr", args.lr),
        ("--data", args.data),
        ("--samples-per-chunk", args.samples_per_chunk),
        ("--test-per-chunk", args.test_per_chunk),
    ):
        if value is not None:
            command += [flag, str(value)]
    if getattr(args, "debug", False):
        command.append("--debug")
    return command


def _chunk_name(dataset: str, i: int) -> str:
    if dataset == "mnist":
        return f"digits {2 * i} and {2 * i + 1}"
    from retentive.data.cifar import CLASSES

    return f"{CLASSES[2 * i]} and {CLASSES[2 * i + 1]}"


def run(args: argparse.Namespace) -> int:
    if args.chunk is not None:
        return _run_chunk(args)
    if args.output.exists() and any((args.output / "state").glob("chunk_*")):
        print(f"retentive demo: error: {args.output} holds an earlier run; remove it or pass --output", file=sys.stderr)
        return 2
    from retentive.benchmarking.scenarios import DATASETS

    DATASETS[args.dataset][1](args.data)  # fetched once here, before any worker starts; offline: one line, exit 1
    import torch

    from retentive.evaluation import format_matrix, summarize

    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(5):
        begun = time.perf_counter()
        if subprocess.run(_worker_command(args, i)).returncode != 0:  # the worker printed its one-line error
            return 1
        result = json.loads((args.output / f"row_{i:03d}.json").read_text())
        rows.append(result["row"])
        print(
            f"chunk {i} ({_chunk_name(args.dataset, i)}): update {result['seconds']:.1f} s, "
            f"process {time.perf_counter() - begun:.1f} s, state -> {_state(args.output, i)}",
            flush=True,
        )
    matrix = torch.tensor(rows)
    what = "digits" if args.dataset == "mnist" else "images"
    print(f"\nAccuracy (%) on each chunk's test {what} after each update:\n" + format_matrix(matrix))
    metrics = summarize(matrix)
    print("\n" + "  ".join(f"{name} {100 * value:.2f}%" for name, value in metrics.items()))
    print(f"\nTensorBoard: tensorboard --logdir {args.output / 'tensorboard'}")
    return 0
