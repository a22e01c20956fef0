"""A 2-process DDP update for tests/ddp/test_memory_deletion_ddp.py (Lightning runs this script
again for rank 1): one DER update of ``--input`` (or from scratch) on a Split-MNIST chunk, writing
``--output`` and dumping each rank's memory replica to ``<output>.rank<r>.pt``.

    python tests/support/memory_ddp_worker.py --output DIR --chunk K [--input STATE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from ddp_worker import make_updater, rank  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--chunk", type=int, required=True)
    parser.add_argument("--input", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from conftest import small_split

    from retentive.data import load_mnist

    chunk = small_split(load_mnist("train"), 300)[args.chunk]
    updater = make_updater(args.input, args.output, devices=2)
    updater.update(chunk, task_id=args.chunk)
    torch.save(updater.memory.state_dict(), args.output.parent / f"{args.output.name}.rank{rank()}.pt")


if __name__ == "__main__":
    main()
