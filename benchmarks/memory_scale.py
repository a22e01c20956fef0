"""A replay memory larger than RAM should be: 1,000,000 CIFAR-sized images on disk against the same
memory in RAM, and 10,000,000 tiny samples served from disk or refused up front.

Part 1, once per backend (``disk``, then ``tensor``: the same memory held in RAM), each in its own
process so that its peak resident size is its own: an Experience Replay updater with
``memory_size=1,000,000`` whose memory is filled with 1,000,000 distinct 3x32x32 uint8 images
(plus labels and task ids: 3,088 bytes a row, 3.1 GB), then one update on a 6,400-image chunk
(64 new + 64 replayed per step, a small CNN, one torch thread), then the state loaded back by a
new updater. Measured: the peak resident size (``VmHWM``, reset before each phase through
``/proc/self/clear_refs``) while filling, while training, over the whole update (its rollback
snapshot, the fit and the state save) and while loading; steps per second of the fit; the
update's save and the load's seconds. The ratio of the two backends' steps/s is the cost of
reading replayed rows from disk.

Part 2: ``memory_size=10,000,000`` tiny samples (8 float32 features, a label, a task id: 48
bytes a row). The disk backend fills it and serves 200 replay draws of 128 with its resident size
bounded; the ``tensor`` backend, asked to hold 10,000,000 CIFAR-sized rows in RAM (30.9 GB), is
refused by the memory budget with a MemoryBudgetError naming the bytes needed and available,
before anything is allocated.

    python benchmarks/memory_scale.py [--samples 1000000] [--dir /tmp/memory_scale] [--out benchmarks/results/memory_scale.json]

Big files go under ``--dir`` (about 16 GB at the peak for 1,000,000 samples) and are deleted at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from quiet_cpu import QUIET_CPU
from torch import nn

ROWS_PER_FILL = 2_000
CHUNK, BATCH, FRAC = 6_400, 128, 0.5
TINY_FEATURES = 8


def peak_rss() -> int:
    """The process's peak resident size since the last :func:`reset_peak` (bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def images(start: int, n: int) -> torch.Tensor:
    """``n`` distinct pseudo-random 3x32x32 uint8 images, a pure function of their index."""
    index = torch.arange(start, start + n, dtype=torch.int64).unsqueeze(1)
    pixel = torch.arange(3 * 32 * 32, dtype=torch.int64).unsqueeze(0)
    mixed = (index * 2654435761 + pixel * 40503 + (index * pixel) % 65521) % 1000003
    return (mixed % 256).to(torch.uint8).view(n, 3, 32, 32)


class Model(nn.Module):
    """A small CNN on uint8 images (scaled to [0, 1] inside), so that the step's cost is mostly
    the memory's and the loop's, not the network's: the least favourable case for the disk."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.float() / 255)


class Timer:
    """A Lightning callback: the fit's seconds and steps, and the peak resident size while training."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.steps = 0
        self.peak = 0

    def on_train_start(self, *args: Any) -> None:
        reset_peak()
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.steps += 1

    def on_train_end(self, *args: Any) -> None:
        self.end = time.perf_counter()
        self.peak = peak_rss()


def updater(backend: str, samples: int, folder: Path, **extra: Any) -> Any:
    import pytorch_lightning as pl

    from retentive import ExperienceReplayModelUpdater

    callback = type("TimerCallback", (Timer, pl.Callback), {})()
    torch.manual_seed(0)
    built = ExperienceReplayModelUpdater(
        Model(),
        nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.05),
        memory_size=samples,
        batch_size=BATCH,
        batch_memory_frac=FRAC,
        memory_backend=backend,
        memory_dir=folder / "scratch",
        **QUIET_CPU,
        max_epochs=1,
        seed=0,
        callbacks=[callback],
        **extra,
    )
    return built, callback


def update_phase(backend: str, samples: int, folder: Path) -> dict[str, Any]:
    """Part 1 for one backend: fill, update (fit and save), load."""
    from retentive.data import TensorChunk

    result: dict[str, Any] = {"backend": backend, "samples": samples}
    built, timer = updater(backend, samples, folder, output_state_folder=folder / backend / "s1")
    result["rss_before_fill"] = peak_rss()
    reset_peak()
    start = time.perf_counter()
    for first in range(0, samples, ROWS_PER_FILL):
        n = min(ROWS_PER_FILL, samples - first)
        labels = torch.arange(first, first + n) % 10
        built.memory.add({"inputs": images(first, n), "targets": labels, "task_ids": torch.zeros(n, dtype=torch.long)})
    result["fill_s"] = time.perf_counter() - start
    result["rss_fill"] = peak_rss()
    assert len(built.memory) == samples, len(built.memory)
    chunk = TensorChunk(images(samples, CHUNK), torch.arange(CHUNK) % 10)
    reset_peak()
    start = time.perf_counter()
    built.update(chunk, task_id=0)
    end = time.perf_counter()
    result.update(
        rss_update=peak_rss(),
        rss_training=timer.peak,
        steps=timer.steps,
        steps_per_s=timer.steps / (timer.end - timer.start),
        snapshot_s=timer.start - start,
        save_s=end - timer.end,
        update_s=end - start,
    )
    memory_file = folder / backend / "s1" / "memory.pt"
    result["state_memory_bytes"] = memory_file.stat().st_size
    del built
    gc.collect()  # the first updater (and its memory) gone before the load is measured
    reset_peak()
    start = time.perf_counter()
    loaded, _ = updater(backend, samples, folder, input_state_folder=folder / backend / "s1")
    result["load_s"] = time.perf_counter() - start
    result["rss_load"] = peak_rss()
    assert len(loaded.memory) == samples and loaded.memory.seen == samples + CHUNK
    drawn = loaded.memory.sample(64)
    assert drawn is not None and drawn.inputs.dtype == torch.uint8
    return result


def tiny_phase(folder: Path, samples: int) -> dict[str, Any]:
    """Part 2: 10,000,000 tiny samples served from disk; 10,000,000 images refused in RAM."""
    from retentive.errors import MemoryBudgetError
    from retentive.memory import ReplayBuffer
    from retentive.memory.budget import available_bytes

    result: dict[str, Any] = {"samples": samples}
    reset_peak()
    memory = ReplayBuffer(samples, seed=0, backend="disk", directory=folder / "scratch")
    start = time.perf_counter()
    block = min(500_000, samples)
    for first in range(0, samples, block):
        features = torch.arange(first, first + block, dtype=torch.float32).unsqueeze(1).repeat(1, TINY_FEATURES)
        memory.add({"inputs": features, "targets": torch.arange(block) % 10, "task_ids": torch.zeros(block).long()})
    result["fill_s"] = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(200):
        drawn = memory.sample(128)
        assert drawn is not None and bool((drawn.inputs[:, 0] == drawn.inputs[:, 1]).all())
    result.update(
        disk_bytes=memory.nbytes(),
        draws_per_s=200 / (time.perf_counter() - start),
        rss_disk=peak_rss(),
        size=len(memory),
    )
    del memory
    budget = available_bytes("cpu")
    result["ram_budget_bytes"] = budget
    in_ram = ReplayBuffer(samples, backend="tensor")
    try:
        in_ram.add({"inputs": images(0, 4), "targets": torch.zeros(4).long(), "task_ids": torch.zeros(4).long()})
        result["ram_refusal"] = None
    except MemoryBudgetError as error:
        result["ram_refusal"] = str(error)
    result["ram_rows_after_refusal"] = len(in_ram)
    return result


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    folder = args.dir
    result = (
        tiny_phase(folder, args.tiny_samples)
        if args.phase == "tiny"
        else update_phase(args.phase, args.samples, folder)
    )
    print("RESULT " + json.dumps(result), flush=True)


def run_child(phase: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase, "--samples", str(args.samples), "--dir", str(args.dir)]
    command += ["--tiny-samples", str(args.tiny_samples)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{phase} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def report(results: dict[str, Any]) -> None:
    gib = 1 << 30
    disk, ram = results["disk"], results["tensor"]
    print(f"{'':24}{'disk':>12}{'tensor (RAM)':>14}")
    for key, scale, unit in (
        ("rss_fill", gib, "GiB"),
        ("rss_training", gib, "GiB"),
        ("rss_update", gib, "GiB"),
        ("rss_load", gib, "GiB"),
        ("steps_per_s", 1, "/s"),
        ("snapshot_s", 1, "s"),
        ("save_s", 1, "s"),
        ("load_s", 1, "s"),
    ):
        print(f"{key + ' (' + unit + ')':24}{disk[key] / scale:12.2f}{ram[key] / scale:14.2f}")
    print(f"steps/s disk / RAM: {results['steps_ratio']:.3f}")
    tiny = results["tiny"]
    print(
        f"{tiny['samples']:,} tiny samples on disk: {tiny['disk_bytes'] / 1e9:.2f} GB, peak RSS {tiny['rss_disk'] / gib:.2f} GiB, "
        f"{tiny['draws_per_s']:.0f} draws/s; in RAM: {tiny['ram_refusal']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--tiny-samples", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/memory_scale"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memory_scale.json"))
    parser.add_argument("--phase", choices=("disk", "tensor", "tiny"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase is not None:
        child(args)
        return
    if args.dir.exists():
        raise SystemExit(f"{args.dir} exists; pass a new --dir (everything under it is deleted at the end)")
    try:
        results: dict[str, Any] = {phase: run_child(phase, args) for phase in ("disk", "tensor")}
        shutil.rmtree(args.dir / "disk", ignore_errors=True)
        shutil.rmtree(args.dir / "tensor", ignore_errors=True)
        results["tiny"] = run_child("tiny", args)
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    results["steps_ratio"] = results["disk"]["steps_per_s"] / results["tensor"]["steps_per_s"]
    results["torch_threads"] = 1
    results["torch"] = torch.__version__
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)


if __name__ == "__main__":
    main()
