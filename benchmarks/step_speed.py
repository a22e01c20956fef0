"""Step time of retentive's ER/DER++ updaters against a hand-written PyTorch loop doing the same math.

Workload (REFERENCE.md): Split-MNIST chunk, MLP 784-100-100-10, 32 new + 32 memory samples a
step, reservoir memory of 500, SGD lr 0.03, one torch thread. Both sides run alternately in one
process, several rounds, and each round's ratio is taken side by side; the medians are reported.

retentive's step is measured two ways: (1) steady state — the time between the starts of
consecutive training batches, which includes data loading, Lightning's loop, the memory insert
and the optimizer step; (2) the whole ``update()`` call divided by its steps, which also pays for
building the Trainer and the DataLoader. A third run resumes from a state folder to show that
steps after a reload are as fast as before it. A fourth measurement runs the plain loop's ER math
as a bare LightningModule, to split the gap into Lightning's share and retentive's.

    python benchmarks/step_speed.py [--rounds 5] [--steps 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from retentive import DarkExperienceReplayModelUpdater, ExperienceReplayModelUpdater
from retentive.data import load_mnist, split_mnist
from retentive.models import MLP

NEW, MEM, CAPACITY, LR = 32, 32, 500, 0.03


class StepClock(pl.Callback):
    """Records the time at the start of every training batch."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.starts.append(time.perf_counter())

    def median_step(self) -> float:
        gaps = [b - a for a, b in zip(self.starts[10:-1], self.starts[11:])]  # skip warm-up, last partial
        return statistics.median(gaps)


def plain_loop(x_all: torch.Tensor, y_all: torch.Tensor, steps: int, der: bool, seed: int) -> float:
    """The same math by hand: shuffled batches by indexing, one forward over new+memory, reservoir insert."""
    torch.manual_seed(seed)
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(seed)
    mem_x = torch.zeros(CAPACITY, *x_all.shape[1:])
    mem_y = torch.zeros(CAPACITY, dtype=torch.long)
    mem_z = torch.zeros(CAPACITY, 10)
    size = seen = 0
    order = torch.randperm(len(y_all), generator=g)
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        idx = order[(step * NEW) % (len(order) - NEW) :][:NEW]
        x, y = x_all[idx], y_all[idx]
        if size:
            m = torch.rand(size, generator=g).topk(min(MEM, size)).indices
            out = model(torch.cat([x, mem_x[m]]))
            new_out, mem_out = out[:NEW], out[NEW:]
            if der:
                loss = (
                    F.cross_entropy(new_out, y)
                    + 0.5 * F.mse_loss(mem_out, mem_z[m])
                    + 0.5 * F.cross_entropy(mem_out, mem_y[m])
                ) / 2.0
            else:
                loss = (F.cross_entropy(new_out, y) + F.cross_entropy(mem_out, mem_y[m])) / 2.0
        else:
            new_out = model(x)
            loss = F.cross_entropy(new_out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        pos = torch.arange(seen, seen + NEW)
        slots = torch.where(pos < CAPACITY, pos, (torch.rand(NEW, generator=g, dtype=torch.float64) * (pos + 1)).long())
        keep = slots < CAPACITY
        mem_x[slots[keep]] = x[keep]
        mem_y[slots[keep]] = y[keep]
        mem_z[slots[keep]] = new_out.detach()[keep]
        size = min(CAPACITY, seen + NEW)
        seen += NEW
        times.append(time.perf_counter() - t0)
    return statistics.median(times[10:])


class BareLightning(pl.LightningModule):
    """The plain loop's ER math as a LightningModule (manual optimisation, memory inline): what
    Lightning's loop alone costs, so the gap splits into Lightning's share and retentive's."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = MLP()
        self.g = torch.Generator().manual_seed(0)
        self.mem_x = torch.zeros(CAPACITY, 1, 28, 28)
        self.mem_y = torch.zeros(CAPACITY, dtype=torch.long)
        self.size = self.seen = 0

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.model.parameters(), lr=LR)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        x, y = batch
        opt = self.optimizers()
        opt.zero_grad()
        if self.size:
            m = torch.rand(self.size, generator=self.g).topk(min(MEM, self.size)).indices
            out = self.model(torch.cat([x, self.mem_x[m]]))
            loss = (F.cross_entropy(out[: len(y)], y) + F.cross_entropy(out[len(y) :], self.mem_y[m])) / 2.0
        else:
            loss = F.cross_entropy(self.model(x), y)
        self.manual_backward(loss)
        opt.step()
        n = len(y)
        pos = torch.arange(self.seen, self.seen + n)
        slots = torch.where(
            pos < CAPACITY, pos, (torch.rand(n, generator=self.g, dtype=torch.float64) * (pos + 1)).long()
        )
        keep = slots < CAPACITY
        self.mem_x[slots[keep]] = x[keep]
        self.mem_y[slots[keep]] = y[keep]
        self.size = min(CAPACITY, self.seen + n)
        self.seen += n


def bare_lightning(chunk, seed: int) -> float:
    torch.manual_seed(seed)
    clock = StepClock()
    module = BareLightning()
    loader = DataLoader(
        chunk, sampler=BatchSampler(RandomSampler(chunk), batch_size=NEW, drop_last=False), batch_size=None
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[clock],
    )
    trainer.fit(module, loader)  # epoch 1 fills the memory; the clock keeps only the second epoch
    n = len(clock.starts) // 2
    clock.starts = clock.starts[n:]
    return clock.median_step()


def make_updater(
    der: bool, seed: int, clock: StepClock, input_state: Path | None = None, output_state: Path | None = None
):
    torch.manual_seed(seed)
    common = dict(
        loss_fn=torch.nn.CrossEntropyLoss(),
        optimizer=partial(torch.optim.SGD, lr=LR),
        memory_size=CAPACITY,
        batch_size=NEW + MEM,
        batch_memory_frac=0.5,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        callbacks=[clock],
        max_epochs=1,
        seed=seed,
        input_state_folder=input_state,
        output_state_folder=output_state,
    )
    if der:
        return DarkExperienceReplayModelUpdater(MLP(), alpha=0.5, beta=0.5, **common)
    return ExperienceReplayModelUpdater(MLP(), **common)


def timed_update(updater, clock: StepClock, chunk) -> tuple[float, float]:
    """(median steady-state step, whole update / steps) of one update."""
    clock.starts.clear()
    steps_before = updater.learner.total_steps
    t0 = time.perf_counter()
    updater.update(chunk)
    total = time.perf_counter() - t0
    return clock.median_step(), total / (updater.learner.total_steps - steps_before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    chunks = split_mnist(load_mnist("train"))
    x_all, y_all = chunks[1].inputs, chunks[1].targets
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.rounds} rounds of {args.steps} steps")
    for der in (False, True):
        name = "DER++" if der else "ER"
        rows: dict[str, list[float]] = {
            k: [] for k in ("plain", "bare", "steady", "update", "reload", "r_bare", "r_steady", "r_update", "r_reload")
        }
        for r in range(args.rounds):
            first, second = (
                chunks[0].subset(torch.arange(args.steps * NEW)),
                chunks[1].subset(torch.arange(args.steps * NEW)),
            )
            with tempfile.TemporaryDirectory() as tmp:
                state = Path(tmp) / "s0"
                clock = StepClock()
                make_updater(der, r, clock, output_state=state).update(first)  # writes a state with a full memory
                in_process = make_updater(der, r, clock)
                in_process.update(first)  # fills the memory: every step measured below replays
                plain = plain_loop(x_all, y_all, args.steps, der, r)
                bare = bare_lightning(second, r) if not der else float("nan")
                steady, per_update = timed_update(in_process, clock, second)
                reload_steady, _ = timed_update(make_updater(der, r, clock, input_state=state), clock, second)
            rows["plain"].append(plain)
            rows["bare"].append(bare)
            rows["r_bare"].append(bare / plain)
            rows["steady"].append(steady)
            rows["update"].append(per_update)
            rows["reload"].append(reload_steady)
            rows["r_steady"].append(steady / plain)
            rows["r_update"].append(per_update / plain)
            rows["r_reload"].append(reload_steady / plain)
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(
            f"{name:6s} plain loop {1e3 * med['plain']:.2f} ms | retentive steady step {1e3 * med['steady']:.2f} ms "
            f"({med['r_steady']:.2f}x) | whole update / steps {1e3 * med['update']:.2f} ms ({med['r_update']:.2f}x) | "
            f"after reload {1e3 * med['reload']:.2f} ms ({med['r_reload']:.2f}x)"
        )
        print(f"       per-round steady ratios: {', '.join(f'{v:.2f}' for v in rows['r_steady'])}")
        if not der:
            print(
                f"       the same ER math as a bare LightningModule (Lightning's loop alone): {1e3 * med['bare']:.2f} ms "
                f"({med['r_bare']:.2f}x the plain loop)"
            )


if __name__ == "__main__":
    main()
