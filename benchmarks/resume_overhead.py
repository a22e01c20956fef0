"""What resume=True costs: the same update with and without per-epoch checkpoints, side by side.

An update of DER++ on real MNIST digits 2-3 (after a first update on 0-1) is run alternately with
``resume=False`` and ``resume=True`` and timed end to end (``update()`` call, save included); the
medians and their ratio are printed. Run:

    python benchmarks/resume_overhead.py --repeats 5
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kill_test import make_updater, prepare  # noqa: E402  (same workload as the kill test)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--memory-size", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="retentive-resume-") as workdir:
        setup = prepare(Path(workdir), args.samples, args.epochs, args.memory_size)
        for repeat in range(args.repeats):
            for resume in (False, True):
                output = Path(workdir) / f"out_{repeat}_{int(resume)}"
                updater = make_updater(setup, output, setup.input_state, resume=resume)
                begun = time.perf_counter()
                updater.update(setup.chunk, task_id=1)
                times[resume].append(time.perf_counter() - begun)
    plain, checkpointed = statistics.median(times[False]), statistics.median(times[True])
    print(f"{args.samples} samples x {args.epochs} epochs, memory {args.memory_size}, {args.repeats} repeats")
    print(f"resume=False: median {plain:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in times[False])})")
    print(f"resume=True:  median {checkpointed:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in times[True])})")
    print(
        f"ratio {checkpointed / plain:.2f}x; per checkpoint {(checkpointed - plain) / args.epochs * 1000:.0f} ms "
        f"({args.epochs} checkpoints: {args.epochs - 1} epoch ones and the final one)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
