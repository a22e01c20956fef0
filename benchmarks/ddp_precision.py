"""Split-MNIST class-IL with 1 and 2 DDP processes on CPU, and bf16-mixed against 32-bit.

Workload: the demo's DER++ (configs/der.yaml): MLP 784-100-100-10, memory 500, alpha 0.5,
beta 0.5, SGD lr 0.1, 1 epoch per chunk, 32 new + 32 memory samples a step in all — one process
with ``batch_size=64`` or two DDP ranks (gloo) with ``batch_size=32`` each (16 + 16 per rank, the
same step). Every chunk is one ``update()`` by a new updater resuming from the previous chunk's
state folder. Score: mean accuracy over the five tasks' test sets after the last chunk.
Throughput: new training samples per second of the training loop (timed on rank 0 from the start
to the end of each epoch, so process start, imports and state folders are not counted), over the
five chunks; and the median time between the starts of consecutive steps. Fine-tuning (no
memory, 32 new samples a step in all) at 1 and 2 processes gives the cost of DDP itself. One
torch thread per process.

    python benchmarks/ddp_precision.py [--seeds 0 1 2] [--configs 1x32 2x32 1xbf16 2xbf16 1xft 2xft] \
        [--out benchmarks/results/ddp_precision.json]

Each (configuration, seed) runs in its own process (``run`` mode); with two devices Lightning
starts the second rank by running this script again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch

from retentive import DarkExperienceReplayModelUpdater, FineTuningModelUpdater
from retentive.data import load_mnist, split_mnist
from retentive.models import MLP

CONFIGS = {
    "1x32": (1, "32", "derpp"),
    "2x32": (2, "32", "derpp"),
    "1xbf16": (1, "bf16-mixed", "derpp"),
    "2xbf16": (2, "bf16-mixed", "derpp"),
    # the cost of DDP itself: fine-tuning, no memory, the same 32 new samples a step in all
    "1xft": (1, "32", "ft"),
    "2xft": (2, "32", "ft"),
}
STEP_SAMPLES = 64  # 32 new + 32 memory per step, over all ranks


class EpochClock(pl.Callback):
    """Seconds inside training epochs (after the processes are up and the Trainer is set up), and
    the gaps between the starts of consecutive steps."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        self.gaps: list[float] = []
        self._last: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self._start = time.perf_counter()
        self._last = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.seconds += time.perf_counter() - self._start


def run(devices: int, precision: str, method: str, seed: int, out: Path) -> None:
    """Five chunks through state folders; rank 0 writes the result as JSON to ``out``."""
    torch.set_num_threads(1)
    train, test = split_mnist(load_mnist("train")), split_mnist(load_mnist("test"))
    clock = EpochClock()
    start = time.perf_counter()
    states = out.parent / "states"  # the same path on every rank: rank 0 writes, all read
    previous = None
    for i, chunk in enumerate(train):
        torch.manual_seed(seed)  # the model built here is replaced by the saved weights from chunk 1 on
        updater = _updater(devices, precision, method, seed, previous, states / f"chunk_{i}", clock)
        model = updater.update(chunk, task_id=i)
        previous = states / f"chunk_{i}"
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        return
    final = task_accuracies(model, test)
    samples = sum(len(c) for c in train)
    out.write_text(
        json.dumps(
            {
                "devices": devices,
                "precision": precision,
                "method": method,
                "seed": seed,
                "median_step_ms": 1000 * statistics.median(clock.gaps),
                "mean_step_ms": 1000 * statistics.mean(clock.gaps),
                "accuracy": 100 * float(final.mean()),
                "per_task": [100 * v for v in final.tolist()],
                "train_seconds": clock.seconds,
                "samples_per_second": samples / clock.seconds,
                "wall_seconds": time.perf_counter() - start,
                "memory_seen": updater.memory.seen,
            }
        )
    )


@torch.no_grad()
def task_accuracies(model: torch.nn.Module, test: list) -> torch.Tensor:
    """Accuracy on each task's test set, counted locally (no metric that syncs across ranks)."""
    model.eval()
    return torch.tensor([float((model(c.inputs).argmax(1) == c.targets).double().mean()) for c in test])


def _updater(
    devices: int, precision: str, method: str, seed: int, previous: Path | None, state: Path, clock: EpochClock
):
    common = dict(
        input_state_folder=previous,
        output_state_folder=state,
        seed=seed,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        precision=precision,
        logger=False,
        enable_progress_bar=False,
        callbacks=[clock],
        max_epochs=1,
    )
    sgd = partial(torch.optim.SGD, lr=0.1)
    if method == "ft":
        return FineTuningModelUpdater(
            MLP(), torch.nn.CrossEntropyLoss(), sgd, batch_size=STEP_SAMPLES // 2 // devices, **common
        )
    return DarkExperienceReplayModelUpdater(
        MLP(),
        torch.nn.CrossEntropyLoss(),
        sgd,
        memory_size=500,
        batch_size=STEP_SAMPLES // devices,
        batch_memory_frac=0.5,
        alpha=0.5,
        beta=0.5,
        **common,
    )


def load_average() -> float:
    return os.getloadavg()[0]


def table(results: list[dict]) -> str:
    lines = [
        "| method | processes | precision | ACC % (mean ± std, seeds) | samples/s (median) | step ms (median of medians) | per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for devices, precision, method in CONFIGS.values():
        rows = [r for r in results if (r["devices"], r["precision"], r["method"]) == (devices, precision, method)]
        if not rows:
            continue
        accs = [r["accuracy"] for r in rows]
        speeds = [r["samples_per_second"] for r in rows]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        per_run = ", ".join(f"{r['accuracy']:.1f}% {r['samples_per_second']:.0f}/s" for r in rows)
        step = statistics.median(r["median_step_ms"] for r in rows)
        lines.append(
            f"| {'DER++' if method == 'derpp' else 'fine-tuning'} | {devices} | {precision} "
            f"| {statistics.mean(accs):.2f} ± {std:.2f} ({len(rows)}) | {statistics.median(speeds):.0f} | {step:.1f} | {per_run} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    one = sub.add_parser("run", help="one configuration and seed (started by the driver)")
    one.add_argument("--devices", type=int, required=True)
    one.add_argument("--precision", required=True)
    one.add_argument("--method", choices=["derpp", "ft"], required=True)
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ddp_precision.json"))
    args = parser.parse_args()
    if args.mode == "run":
        run(args.devices, args.precision, args.method, args.seed, args.out)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["devices"], r["precision"], r["method"], r["seed"]) for r in results}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    # seeds outermost, configurations interleaved: load from other jobs hits every configuration alike
    for seed in args.seeds:
        for name in args.configs:
            devices, precision, method = CONFIGS[name]
            if (devices, precision, method, seed) in done:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                result_file = Path(tmp) / "result.json"
                load_before = load_average()
                proc = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "run",
                        "--devices",
                        str(devices),
                        "--precision",
                        precision,
                        "--method",
                        method,
                        "--seed",
                        str(seed),
                        "--out",
                        str(result_file),
                    ],
                    env=env,
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    raise SystemExit(f"{name} seed {seed} failed:\n{proc.stderr[-4000:]}")
                result = json.loads(result_file.read_text())
            result["load_average_1min"] = [load_before, load_average()]
            results.append(result)
            args.out.write_text(json.dumps(results, indent=1))
            print(
                f"{name} seed {seed}: {result['accuracy']:.2f}%, {result['samples_per_second']:.0f} samples/s, "
                f"step {result['median_step_ms']:.1f} ms median "
                f"({result['train_seconds']:.1f} s training, {result['wall_seconds']:.0f} s in all; "
                f"load {load_before:.1f} -> {result['load_average_1min'][1]:.1f})",
                flush=True,
            )
    print(table(results))


if __name__ == "__main__":
    main()
