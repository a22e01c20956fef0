"""A 5 GB chunk streamed from WebDataset tar shards through one update, in bounded memory.

The real CIFAR-10 training images (uint8 3x32x32, /work/shared/data or RETENTIVE_DATA), in a
seeded random order, are written once as shards (each sample its raw 3,072 bytes and a ``.cls``
label, about 6.7 KB in the tar) and the shards copied whole until they hold ``--gigabytes``. One
Experience Replay update (memory 1,000 samples, a linear model, one epoch, torch threads 1) streams
them through :class:`retentive.data.stream_formats.WebDatasetChunk` in a subprocess whose peak
resident size (``VmHWM``) is the figure; then the shards are deleted.

Accuracy against the same data held as a map-style chunk: the 50,000 untiled training images,
written as shards and streamed, against the same images as a ``TensorChunk``, seeds 0-2, one epoch
each, CIFAR-10 test accuracy (the two read the data in different seeded orders, so they agree
within seed noise, not bit for bit).

    python benchmarks/stream_scale.py [--gigabytes 5] [--out benchmarks/results/stream_scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from quiet_cpu import QUIET_CPU
from torch import nn

SHARD_SAMPLES = 10_000
MEMORY, BATCH = 1000, 256


class Scaled(nn.Module):
    """A linear classifier on uint8 images (scaled to [0, 1] inside, so the memory keeps uint8)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.float().flatten(1) / 255.0)


def write_shards(folder: Path, gigabytes: float | None) -> tuple[list[str], int]:
    """The training images, in a seeded random order, as tar shards; tiled (the shards copied
    whole) until they hold ``gigabytes`` (None: the images once)."""
    import webdataset as wds

    from retentive.data.cifar import cifar10

    train = cifar10(train=True)
    images, labels = train.images.numpy(), train.targets.numpy()
    # a seeded random order, as WebDataset data is prepared: the image folders are sorted by class,
    # and a shuffle buffer cannot undo a whole-chunk sort
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0)).numpy()
    folder.mkdir(parents=True, exist_ok=True)
    base: list[str] = []
    for start in range(0, len(labels), SHARD_SAMPLES):
        base.append(str(folder / f"shard-{len(base):06d}.tar"))
        with wds.TarWriter(base[-1], format=tarfile.USTAR_FORMAT) as writer:  # one header a file, not two (PAX)
            for index in order[start : start + SHARD_SAMPLES]:
                writer.write(
                    {"__key__": f"{index:09d}", "input.u8": images[index].tobytes(), "cls": int(labels[index])}
                )
    urls, written = list(base), sum(os.path.getsize(u) for u in base)
    while gigabytes is not None and written < gigabytes * 1e9:  # a tile: the next base shard again
        tile = len(urls)
        urls.append(str(folder / f"shard-{tile:06d}.tar"))
        shutil.copyfile(base[tile % len(base)], urls[-1])
        written += os.path.getsize(urls[-1])
    return urls, len(urls) * SHARD_SAMPLES


def train(data: object, seed: int) -> tuple[float, float]:
    """One ER update on ``data``; the model's CIFAR-10 test accuracy and the seconds it took."""
    from retentive.data.cifar import cifar10
    from retentive.evaluation import accuracy
    from retentive.updaters import ExperienceReplayModelUpdater

    torch.manual_seed(seed)
    model = Scaled()
    updater = ExperienceReplayModelUpdater(
        model=model, loss_fn=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.SGD(p, lr=0.01),
        memory_size=MEMORY, batch_size=BATCH, max_epochs=1, seed=seed, **QUIET_CPU,
    )  # fmt: skip
    start = time.perf_counter()
    updater.update(data)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    return accuracy(model, cifar10(train=False)), seconds


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def as_image(raw: torch.Tensor) -> torch.Tensor:
    """A sample's raw bytes as the 3x32x32 uint8 image they were written from."""
    return raw.view(3, 32, 32)


def stream_phase(urls: list[str], samples: int, seed: int) -> dict[str, float]:
    """(In its own process) one update streaming the shards: accuracy, time, peak RSS."""
    from retentive.data.stream_formats import WebDatasetChunk

    acc, seconds = train(WebDatasetChunk(urls, x="input.u8", length=samples, transform=as_image), seed)
    return {
        "accuracy": acc,
        "seconds": seconds,
        "samples_per_second": samples / seconds,
        "peak_rss_mib": peak_rss_mib(),
    }


def map_phase(seed: int) -> dict[str, float]:
    from retentive.data.cifar import cifar10

    acc, seconds = train(cifar10(train=True), seed)
    return {"accuracy": acc, "seconds": seconds, "peak_rss_mib": peak_rss_mib()}


def child(args: list[str]) -> dict[str, float]:
    """Run one phase in a fresh process, so that its VmHWM is its own."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, __file__, "--phase", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=5.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folder", default=None, help="where the shards are written (default: a temporary folder)")
    parser.add_argument("--out", default="benchmarks/results/stream_scale.json")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.phase:
        kind, *rest = args.phase
        result = (
            map_phase(int(rest[0])) if kind == "map" else stream_phase(json.loads(rest[0]), int(rest[1]), int(rest[2]))
        )
        print(json.dumps(result))
        return
    root = Path(args.folder or tempfile.mkdtemp(prefix="stream_scale_"))
    try:
        start = time.perf_counter()
        urls, samples = write_shards(root / "big", args.gigabytes)
        write_seconds = time.perf_counter() - start
        size = sum(os.path.getsize(u) for u in urls)
        big = child(["stream", json.dumps(urls), str(samples), "0"])
        shutil.rmtree(root / "big")
        small_urls, small = write_shards(root / "small", None)
        streamed = [child(["stream", json.dumps(small_urls), str(small), str(s)]) for s in range(args.seeds)]
        mapped = [child(["map", str(s)]) for s in range(args.seeds)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = {
        "chunk": {
            "gigabytes_on_disk": size / 1e9,
            "samples": samples,
            "shards": len(urls),
            "write_seconds": write_seconds,
        },
        "streamed_update": big,
        "accuracy_subset": f"the 50,000 CIFAR-10 training images, seeds 0-{args.seeds - 1}, one epoch",
        "streamed": streamed,
        "map_style": mapped,
        "streamed_accuracy_mean": statistics.mean(r["accuracy"] for r in streamed),
        "map_style_accuracy_mean": statistics.mean(r["accuracy"] for r in mapped),
        "accuracy_std": statistics.pstdev([r["accuracy"] for r in streamed + mapped]),
        "torch_threads": 1,
        "command": "python benchmarks/stream_scale.py --gigabytes " + str(args.gigabytes),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
