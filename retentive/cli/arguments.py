"""Argument types and the flags several commands share, defined once so that they read alike.

Importing this must stay cheap (no torch, no Lightning): every parser is built from it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retentive.cli.locations import state_location

DATA_HELP = (
    "a chunk file (.npz, .pt or .csv) or a folder of them, concatenated in name order. "
    ".npz/.pt: arrays 'inputs' (N, ...), 'targets' (N,) integer classes, optional 'task_ids' (N,); "
    ".pt is read with torch.load(weights_only=True). uint8 inputs are images, scaled to [0, 1]. "
    ".csv: a header row; column 'target' is the class, optional 'task_id', every other column a float feature"
)


def add_epilog(parser: argparse.ArgumentParser, epilog: str) -> None:
    """Show ``epilog`` under the command's help as written: its examples and exit codes keep their lines."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = epilog


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def override(text: str) -> str:
    """``--set KEY=VALUE``: the shape is checked here (bad usage, exit 2); the value when the config loads."""
    key, sep, _ = text.partition("=")
    if not sep or not key.strip() or not all(part.strip() for part in key.split(".")):
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with a dotted KEY, e.g. optimizer.init_args.lr=0.01, got {text!r}"
        )
    return text


def add_chunk(parser: argparse.ArgumentParser, what: str = "the new training chunk") -> None:
    """``--data CHUNK``, the chunk file or folder a command reads."""
    parser.add_argument("--data", required=True, type=Path, metavar="CHUNK", help=f"{what}: " + DATA_HELP)


def add_state_folders(parser: argparse.ArgumentParser, input_help: str, output_help: str) -> None:
    """``--input-state`` (optional: the first chunk has none) and ``--output-state``, folders or URLs."""
    parser.add_argument("--input-state", type=state_location, default=None, metavar="DIR", help=input_help)
    parser.add_argument("--output-state", required=True, type=state_location, metavar="DIR", help=output_help)


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides", type=override, help=help
    )


def add_threads(parser: argparse.ArgumentParser, help: str = "torch CPU threads [torch's default]") -> None:
    """``--threads N``, torch's CPU threads (None: torch's default)."""
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N", help=help)


def add_mnist_options(parser: argparse.ArgumentParser, tasks_help: str, test_help: str) -> None:
    """The scenario options of the MNIST commands: ``--tasks``, ``--test-per-chunk`` and ``--data``."""
    parser.add_argument("--tasks", type=int, default=None, help=tasks_help)
    parser.add_argument("--test-per-chunk", type=int, default=None, metavar="N", help=test_help)
    parser.add_argument(
        "--data", type=Path, default=None, help="folder with the data: the MNIST idx files or CIFAR-10 [searched]"
    )


#: retentive.memory.backends.BACKENDS, named here so that ``--help`` imports no torch (a test keeps them equal)
MEMORY_BACKENDS = ("grown", "tensor", "disk")


def add_memory_options(parser: argparse.ArgumentParser) -> None:
    """``--memory-backend`` and ``--memory-dir``: where the replay memory's rows reside."""
    parser.add_argument(
        "--memory-backend",
        choices=MEMORY_BACKENDS,
        default=None,
        help="where the replay memory's rows reside: grown (on the device, allocated as it fills), tensor (the "
        "whole capacity at once) or disk (memory-mapped files, resident size bounded) [the config's, else grown]",
    )
    parser.add_argument(
        "--memory-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the disk backend's scratch folder [the config's, else the system's temporary folder]",
    )


def memory_overrides(args: argparse.Namespace) -> list[str]:
    """The config overrides ``--memory-backend`` and ``--memory-dir`` stand for."""
    overrides = []
    if args.memory_backend is not None:
        overrides.append(f"updater.init_args.memory_backend={args.memory_backend}")
    if args.memory_dir is not None:
        overrides.append(f"updater.init_args.memory_dir={json.dumps(str(args.memory_dir))}")
    return overrides
