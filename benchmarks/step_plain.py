"""The two sides' shared workloads and the hand-written PyTorch loop that retentive's step is timed
against (benchmarks/step_speed.py): the same data, augmentation, memory and math as the updater,
on the same device and at the same precision, with nothing of Lightning or retentive in it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from retentive.data import TensorChunk, load_mnist, split_mnist
from retentive.data.transforms import cifar10_train_transform
from retentive.models import MLP, ResNet18

NEW, MEM, CAPACITY, LR = 32, 32, 500, 0.03


@dataclass
class Workload:
    """What both sides train: the model, the two chunks (memory fill, measured) and the augmentation."""

    name: str
    make_model: Callable[[], nn.Module]
    fill: TensorChunk
    measured: TensorChunk
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    device: torch.device = torch.device("cpu")
    precision: str = "32"
    window: bool = False  # each side timed over a synchronised window of steps, not step by step

    def sync(self) -> None:
        """Waits for the device's queued work, so that the clock read next covers it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def autocast(self) -> torch.autocast:
        """The plain side's counterpart of the Trainer's precision."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16-mixed")


def mnist_workload(steps: int) -> Workload:
    chunks = split_mnist(load_mnist("train"))
    n = torch.arange(steps * NEW)
    return Workload("MNIST MLP", MLP, chunks[0].subset(n), chunks[1].subset(n))


def resnet_workload(steps: int, nf: int) -> Workload:
    g = torch.Generator().manual_seed(0)

    def chunk(n: int) -> TensorChunk:
        return TensorChunk(
            torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g),
        )

    fill = (CAPACITY // NEW + 2) * NEW  # the fill update leaves the memory full
    return Workload(
        f"ResNet-18 nf={nf}", partial(ResNet18, nf=nf), chunk(fill), chunk(steps * NEW), cifar10_train_transform()
    )


def warm_up(n: int) -> int:
    """Steps left out of a median as warm-up: 10, or a quarter of a short run."""
    return min(10, max(1, n // 4))


class PlainLoop:
    """The same math by hand: shuffled batches by indexing, the augmentation on new and replayed
    samples, one forward over new+memory, reservoir insert of the raw samples."""

    def __init__(self, work: Workload, der: bool, seed: int) -> None:
        self.x_all, self.y_all = work.measured.inputs, work.measured.targets
        self.augment = work.transform or (lambda x: x)
        self.der, self.work, device = der, work, work.device
        torch.manual_seed(seed)
        self.model = work.make_model().to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.g = torch.Generator(device).manual_seed(seed)  # the draws are made where the memory is
        # one row past the capacity takes the samples the reservoir drops: no host sync to pick the kept
        self.mem_x = torch.zeros(CAPACITY + 1, *self.x_all.shape[1:], dtype=self.x_all.dtype, device=device)
        self.mem_y = torch.zeros(CAPACITY + 1, dtype=torch.long, device=device)
        self.mem_z = torch.zeros(CAPACITY + 1, 10, device=device)
        self.size = self.seen = self.steps = 0
        self.order = torch.randperm(len(self.y_all), generator=torch.Generator().manual_seed(seed))

    def step(self) -> float:
        """One step; its wall time in seconds."""
        t0 = time.perf_counter()
        g, device = self.g, self.work.device
        idx = self.order[(self.steps * NEW) % (len(self.order) - NEW) :][:NEW]
        x, y = self.x_all[idx].to(device, non_blocking=True), self.y_all[idx].to(device, non_blocking=True)
        with self.work.autocast():
            loss, new_out = self.loss(x, y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        pos = torch.arange(self.seen, self.seen + NEW, device=device)
        draw = (torch.rand(NEW, generator=g, dtype=torch.float64, device=device) * (pos + 1)).long()
        slots = torch.where(pos < CAPACITY, pos, draw).clamp(max=CAPACITY)
        self.mem_x[slots] = x
        self.mem_y[slots] = y
        self.mem_z[slots] = new_out.detach().float()
        self.size = min(CAPACITY, self.seen + NEW)
        self.seen += NEW
        self.steps += 1
        return time.perf_counter() - t0

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's loss and the new samples' logits."""
        model, augment = self.model, self.augment
        if self.size:
            m = torch.rand(self.size, generator=self.g, device=self.work.device).topk(min(MEM, self.size)).indices
            out = model(torch.cat([augment(x), augment(self.mem_x[m])]))
            new_out, mem_out = out[:NEW], out[NEW:]
            mem_y, mem_z = self.mem_y[m], self.mem_z[m]
            if self.der:
                loss = (
                    F.cross_entropy(new_out, y)
                    + 0.5 * F.mse_loss(mem_out, mem_z)
                    + 0.5 * F.cross_entropy(mem_out, mem_y)
                ) / 2.0
            else:
                loss = (F.cross_entropy(new_out, y) + F.cross_entropy(mem_out, mem_y)) / 2.0
        else:
            new_out = model(augment(x))
            loss = F.cross_entropy(new_out, y)
        return loss, new_out


def plain_loop(work: Workload, steps: int, der: bool, seed: int) -> tuple[float, float]:
    """(median, fastest) step of the plain loop run alone for ``steps`` steps; in window mode the
    mean step over the synchronised window, twice."""
    loop = PlainLoop(work, der, seed)
    if not work.window:
        kept = [loop.step() for _ in range(steps)][warm_up(steps) :]
        return statistics.median(kept), min(kept)
    for _ in range(warm_up(steps)):
        loop.step()
    work.sync()
    t0 = time.perf_counter()
    for _ in range(steps - warm_up(steps)):
        loop.step()
    work.sync()
    mean = (time.perf_counter() - t0) / (steps - warm_up(steps))
    return mean, mean
