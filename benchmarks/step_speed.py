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

``--model resnet18 --nf N`` runs the CIFAR workload instead: ResNet-18 (CIFAR stem, width ``N``) on
3x32x32 uint8 images, the DER paper's augmentation (crop 32 padding 4, flip, normalise) applied to
the new and the replayed samples on both sides, memory 500, SGD lr 0.03. The images are random
bytes: the step's cost does not depend on their content, and the readers are not what is timed.
The bare-Lightning split is measured on the MNIST workload only. Each round also reports the
ratio of the two sides' fastest steps: on a shared machine other processes lengthen some steps
of either side at random, and the fastest step is the least disturbed estimate of each.
``--device cuda[:N]`` (ResNet-18 only) runs both sides on that device: the model, the replay memory
and each batch (moved there from the host, as Lightning moves retentive's) on the device, the
random draws made there, ``--precision bf16-mixed`` as autocast on the plain side and as the
Trainer's precision on retentive's. CUDA runs asynchronously, so on a GPU each side is timed over
a window of steps closed by a synchronisation (``--window-timing`` does the same on the CPU); the
per-step figures (fastest step, interleaved pairs) need a sync in every step and are left out.
``--compare-layouts --nf N --rounds R`` times ResNet-18's forward and backward in NCHW against
channels-last instead (R repetitions each, alternating).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from retentive import DarkExperienceReplayModelUpdater, ExperienceReplayModelUpdater
from retentive.models import MLP, ResNet18, prepare_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_plain import (  # noqa: E402  (the plain side and the workloads, beside this script)
    CAPACITY,
    LR,
    MEM,
    NEW,
    PlainLoop,
    Workload,
    mnist_workload,
    plain_loop,
    resnet_workload,
    warm_up,
)


class StepClock(pl.Callback):
    """Records the time at the start of every training batch. With ``work.window`` the clock is read
    after a synchronisation at the first batch past the warm-up and at the epoch's end, so the
    window between them covers the device's work; the steps inside it are not synchronised."""

    def __init__(self, work: Workload) -> None:
        self.work = work
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if self.work.window and batch_idx == warm_up(trainer.num_training_batches + 1):
            self.work.sync()
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        if self.work.window:
            self.work.sync()
        self.starts.append(time.perf_counter())

    def gaps(self) -> list[float]:
        skip = warm_up(len(self.starts))
        return [b - a for a, b in zip(self.starts[skip:-1], self.starts[skip + 1 :])]  # skip warm-up, last partial

    def median_step(self) -> float:
        """The median step; in window mode the mean step over the synchronised window."""
        if self.work.window:
            skip = warm_up(len(self.starts))
            return (self.starts[-1] - self.starts[skip]) / (len(self.starts) - 1 - skip)
        return statistics.median(self.gaps())


class Interleaved(pl.Callback):
    """One plain-loop step right before each retentive step, both timed: each pair is measured
    within a second, so a busy machine slows both sides of a pair alike."""

    def __init__(self, loop: PlainLoop) -> None:
        self.loop = loop
        self.pairs: list[tuple[float, float]] = []
        self._plain = self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self._plain = self.loop.step()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.pairs.append((self._plain, time.perf_counter() - self._start))

    def ratio(self) -> float:
        """The median over the pairs of retentive's step over the plain loop's."""
        kept = self.pairs[warm_up(len(self.pairs)) :]
        return statistics.median(ret / plain for plain, ret in kept)


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


def bare_lightning(work: Workload, seed: int) -> float:
    torch.manual_seed(seed)
    chunk, clock = work.measured, StepClock(work)
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
    work: Workload,
    der: bool,
    seed: int,
    clock: StepClock,
    input_state: Path | None = None,
    output_state: Path | None = None,
):
    torch.manual_seed(seed)
    common = dict(
        loss_fn=torch.nn.CrossEntropyLoss(),
        optimizer=partial(torch.optim.SGD, lr=LR),
        memory_size=CAPACITY,
        batch_size=NEW + MEM,
        batch_memory_frac=0.5,
        accelerator="cpu" if work.device.type == "cpu" else "gpu",
        devices=[work.device.index] if work.device.index is not None else 1,
        precision=work.precision,
        logger=False,
        enable_progress_bar=False,
        callbacks=[clock],
        max_epochs=1,
        seed=seed,
        input_state_folder=input_state,
        output_state_folder=output_state,
        train_transform=work.transform,  # buffer_transform: the same (Renate's default)
    )
    if der:
        return DarkExperienceReplayModelUpdater(work.make_model(), alpha=0.5, beta=0.5, **common)
    return ExperienceReplayModelUpdater(work.make_model(), **common)


def timed_update(updater, clock: StepClock, chunk) -> tuple[float, float]:
    """(median steady-state step, whole update / steps) of one update."""
    clock.starts.clear()
    steps_before = updater.learner.total_steps
    clock.work.sync()
    t0 = time.perf_counter()
    updater.update(chunk)
    clock.work.sync()  # the update's last queued device work belongs to it
    total = time.perf_counter() - t0
    return clock.median_step(), total / (updater.learner.total_steps - steps_before)


def one_round(work: Workload, der: bool, r: int, steps: int) -> dict[str, float]:
    """One round side by side: the plain loop, retentive in process, after a reload (and the bare module)."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "s0"
        clock = StepClock(work)
        make_updater(work, der, r, clock, output_state=state).update(work.fill)  # a state with a full memory
        in_process = make_updater(work, der, r, clock)
        in_process.update(work.fill)  # fills the memory: every step measured below replays
        plain, plain_min = plain_loop(work, steps, der, r)
        bare = bare_lightning(work, r) if not der and work.transform is None else float("nan")
        steady, per_update = timed_update(in_process, clock, work.measured)
        steady_min = float("nan") if work.window else min(clock.gaps())
        reload_steady, _ = timed_update(make_updater(work, der, r, clock, input_state=state), clock, work.measured)
        r_pairs = float("nan") if work.window else interleaved_ratio(work, der, r, in_process)
    return {
        "plain": plain,
        "bare": bare,
        "steady": steady,
        "update": per_update,
        "reload": reload_steady,
        "r_bare": bare / plain,
        "r_steady": steady / plain,
        "r_update": per_update / plain,
        "r_reload": reload_steady / plain,
        "r_min": steady_min / plain_min,
        "r_pairs": r_pairs,
    }


def interleaved_ratio(work: Workload, der: bool, r: int, updater) -> float:  # noqa: ANN001
    """The median ratio of one more update of ``updater`` with a plain step before each of its steps."""
    pairs = Interleaved(PlainLoop(work, der, r + 1000))
    updater.callbacks.append(pairs)  # the next update's Trainer runs it
    updater.update(work.measured)  # the plain loop replays from its second step (warm-up skips it)
    return pairs.ratio()


def compare_layouts(nf: int, repetitions: int) -> None:
    """A forward and backward of ResNet-18 on 64 images, NCHW against channels-last, alternating."""
    x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
    models = {"contiguous": ResNet18(nf=nf), "channels_last": prepare_model(ResNet18(nf=nf), channels_last=True)}
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repetitions + 1):  # the first repetition warms up
        for name, net in models.items():
            t0 = time.perf_counter()
            F.cross_entropy(net(x), y).backward()
            times[name].append(time.perf_counter() - t0)
    for name, kept in times.items():
        print(f"{name:14s} fastest {1e3 * min(kept[1:]):.1f} ms, median {1e3 * statistics.median(kept[1:]):.1f} ms")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--model", choices=("mlp", "resnet18"), default="mlp")
    parser.add_argument("--nf", type=int, default=64, help="ResNet-18's width (--model resnet18)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    parser.add_argument("--methods", nargs="+", choices=("er", "der++"), default=["er", "der++"])
    parser.add_argument("--compare-layouts", action="store_true", help="time NCHW against channels-last instead")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (--model resnet18), both sides")
    parser.add_argument("--precision", choices=("32", "bf16-mixed"), default="32", help="both sides (resnet18)")
    parser.add_argument("--window-timing", action="store_true", help="time synchronised windows (always on a GPU)")
    args = parser.parse_args()
    try:
        args.device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device!r}: {error}")
    if args.device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu, cuda or cuda:N, not {args.device}")
    if (args.model == "mlp" or args.compare_layouts) and (args.device.type != "cpu" or args.precision != "32"):
        parser.error("--device and --precision apply to the --model resnet18 step comparison only")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch sees no CUDA device")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.compare_layouts:
        compare_layouts(args.nf, args.rounds)
        return
    work = mnist_workload(args.steps) if args.model == "mlp" else resnet_workload(args.steps, args.nf)
    window = args.window_timing or args.device.type != "cpu"
    work = replace(work, device=args.device, precision=args.precision, window=window)
    timing = "synchronised windows" if window else "step by step"
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {work.name}, "
        f"{args.rounds} rounds of {args.steps} steps, device {work.device}, precision {work.precision}, "
        f"timed in {timing}"
    )
    for der in [method == "der++" for method in args.methods]:
        name = "DER++" if der else "ER"
        rounds = [one_round(work, der, r, args.steps) for r in range(args.rounds)]
        med = {k: statistics.median(row[k] for row in rounds) for k in rounds[0]}
        print(
            f"{name:6s} plain loop {1e3 * med['plain']:.2f} ms | retentive steady step {1e3 * med['steady']:.2f} ms "
            f"({med['r_steady']:.3f}x) | whole update / steps {1e3 * med['update']:.2f} ms ({med['r_update']:.3f}x) | "
            f"after reload {1e3 * med['reload']:.2f} ms ({med['r_reload']:.3f}x)"
        )
        ratios = ", ".join(f"{row['r_steady']:.3f}" for row in rounds)
        print(f"       per-round steady ratios: {ratios}")
        if window:
            print("       (per-step figures left out: they need a sync in every step)")
        else:
            paired = ", ".join(f"{row['r_pairs']:.3f}" for row in rounds)
            print(f"       interleaved, each retentive step right after a plain step, median per round: {paired}")
            fastest = ", ".join(f"{row['r_min']:.3f}" for row in rounds)
            print(f"       fastest step over fastest step, per round (robust to a busy machine): {fastest}")
        if med["bare"] == med["bare"]:  # measured (not NaN)
            print(
                f"       the same ER math as a bare LightningModule (Lightning's loop alone): {1e3 * med['bare']:.2f} ms "
                f"({med['r_bare']:.2f}x the plain loop)"
            )


if __name__ == "__main__":
    main()
