"""Write Split-MNIST as ten chunk files, the data of examples/split_mnist_pipeline.sh.

    python examples/export_split_mnist.py --output chunks [--limit N] [--format npz|pt]

gives chunks/train/chunk_{0..4}.npz and chunks/test/chunk_{0..4}.npz: digits 0-1, 2-3, ..., 8-9,
as uint8 images (N, 1, 28, 28) with their labels. MNIST is found as `retentive.data.load_mnist`
finds it (``--data``, ``$RETENTIVE_DATA``, ``../shared/data/mnist``, or the download cache),
and fetched into the cache when it is missing (``$RETENTIVE_MNIST_MIRROR`` overrides the mirrors).
Without it and offline: one line on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retentive.data.export import export_split_mnist


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="folder for train/ and test/")
    parser.add_argument("--limit", type=int, default=None, help="at most N random samples per chunk [all]")
    parser.add_argument("--format", choices=("npz", "pt"), default="npz", help="chunk file format [npz]")
    parser.add_argument("--data", type=Path, default=None, help="folder with the MNIST idx files [searched]")
    args = parser.parse_args()
    from retentive.data.mnist import MNISTNotFoundError, ensure_mnist

    try:
        ensure_mnist(args.data)
    except MNISTNotFoundError as error:
        print(f"export_split_mnist.py: error: {error}", file=sys.stderr)
        return 1
    written = export_split_mnist(args.output, limit=args.limit, suffix=f".{args.format}", root=args.data)
    for split, paths in written.items():
        print(f"{split}: {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
