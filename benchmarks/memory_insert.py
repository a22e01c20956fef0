"""Reservoir insert throughput: retentive's vectorised buffer against a per-sample Python loop.

Streams 1,000,000 MNIST-sized samples (float32 1x28x28 images from the real training set, with
labels and task ids) through ``ReplayBuffer.add`` in batches of 256, into a 500-slot memory. The
per-sample loop is Mammoth's ``Buffer.add_data`` (a Python loop over the batch, one NumPy draw and
one row copy per accepted sample); it is run on a 50,000-sample stream, enough for its rate. One torch thread; medians of runs.

    python benchmarks/memory_insert.py [--samples 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from retentive.data import load_mnist
from retentive.memory import ReplayBuffer

BATCH, CAPACITY = 256, 500


def vectorised(images: torch.Tensor, labels: torch.Tensor, samples: int) -> float:
    memory = ReplayBuffer(CAPACITY, seed=0)
    task = torch.zeros(BATCH, dtype=torch.long)
    n_batches = samples // BATCH
    start = time.perf_counter()
    for b in range(n_batches):
        i = (b * BATCH) % (len(labels) - BATCH)
        memory.add({"inputs": images[i : i + BATCH], "targets": labels[i : i + BATCH], "task_ids": task})
    seconds = time.perf_counter() - start
    assert memory.seen == n_batches * BATCH and len(memory) == CAPACITY
    return n_batches * BATCH / seconds


def _reservoir(seen: int, capacity: int) -> int:
    """Mammoth's per-sample draw: the slot for sample number ``seen``, or -1."""
    if seen < capacity:
        return seen
    draw = np.random.randint(0, seen + 1)
    return draw if draw < capacity else -1


def per_sample(images: torch.Tensor, labels: torch.Tensor, samples: int) -> float:
    """Mammoth's ``Buffer.add_data``: a Python loop over the batch, one draw and one copy per sample."""
    mem_x = torch.zeros(CAPACITY, *images.shape[1:])
    mem_y = torch.zeros(CAPACITY, dtype=torch.long)
    mem_t = torch.zeros(CAPACITY, dtype=torch.long)
    task = torch.zeros(BATCH, dtype=torch.long)
    device = torch.device("cpu")
    np.random.seed(0)
    seen = 0
    start = time.perf_counter()
    for b in range(samples // BATCH):
        i = (b * BATCH) % (len(labels) - BATCH)
        x, y = images[i : i + BATCH], labels[i : i + BATCH]
        for j in range(x.shape[0]):
            slot = _reservoir(seen, CAPACITY)
            seen += 1
            if slot >= 0:
                mem_x[slot] = x[j].to(device)
                mem_y[slot] = y[j].to(device)
                mem_t[slot] = task[j].to(device)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_mnist("train")
    images, labels = data.inputs, data.targets
    fast = [vectorised(images, labels, args.samples) for _ in range(args.runs)]
    slow = [per_sample(images, labels, 50_000) for _ in range(args.runs)]
    print(
        f"vectorised reservoir insert: median {statistics.median(fast) / 1e6:.2f} M samples/s "
        f"(runs: {', '.join(f'{v / 1e6:.2f}' for v in fast)}) over {args.samples:,} samples in batches of {BATCH}"
    )
    print(
        f"per-sample Python loop:      median {statistics.median(slow) / 1e6:.3f} M samples/s "
        f"(runs: {', '.join(f'{v / 1e6:.3f}' for v in slow)}) over 50,000 samples"
    )
    print(f"speed-up: {statistics.median(fast) / statistics.median(slow):.0f}x")


if __name__ == "__main__":
    main()
