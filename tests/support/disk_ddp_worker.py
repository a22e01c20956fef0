"""A real 2-process DDP run on CPU (gloo) with a disk-backed memory, for tests/ddp/test_disk_memory_ddp.py.

Lightning's ``strategy="ddp"`` runs this script again for rank 1. Two DER++ updates (chunk 0 from
scratch, chunk 1 from its state) with ``memory_backend="disk"``, each rank's memory in its own
private scratch files under ``OUT/scratch``; after each update each rank dumps its model and
memory replica to ``OUT/<name>.rank<r>.pt``.

    python tests/support/disk_ddp_worker.py --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from ddp_worker import chunks, dump, make_updater


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = chunks()
    disk = dict(memory_backend="disk", memory_dir=args.out / "scratch")
    updater = make_updater(None, args.out / "disk0", devices=2, **disk)
    dump(args.out, "disk0", updater, None, updater.update(data[0], task_id=0))
    updater = make_updater(args.out / "disk0", args.out / "disk1", devices=2, **disk)
    dump(args.out, "disk1", updater, None, updater.update(data[1], task_id=1))


if __name__ == "__main__":
    main()
