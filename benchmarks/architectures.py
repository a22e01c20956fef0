"""Seq-MNIST figures for the architecture, generative, adversarial and meta-learning updaters.

The DER paper's protocol (benchmarks/der_protocol.py; REFERENCE.md): 5 tasks of 2 digits, MLP
784-100-100 (Xavier init), SGD without momentum, 1 epoch per task, every chunk one update by a
new updater resuming from the previous chunk's state folder; the score is the mean accuracy over
the five test sets after the last task. Task-IL methods (PackNet, progressive nets) see task ids
(one head or column per task); the others are class-IL. Step time is the mean wall time of a
training step (batch start to batch end, Lightning callback), one torch thread.

    python benchmarks/architectures.py --methods packnet pnn er200 rar200 mer200 mer500 dgr dgr_sleep \
        [--seeds 0 1 2] [--train-per-chunk N] [--out benchmarks/results/architectures.json]
    python benchmarks/architectures.py --report benchmarks/results/architectures_*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from quiet_cpu import QUIET_CPU

from retentive import (
    ExperienceReplayModelUpdater,
    GenerativeReplayModelUpdater,
    MetaExperienceReplayModelUpdater,
    PackNetModelUpdater,
    ProgressiveNetworkModelUpdater,
    RetrospectiveAdversarialReplayModelUpdater,
    VariationalAutoencoder,
)
from retentive.data import TensorChunk, load_mnist, split_mnist
from retentive.data.scenarios import SPLIT_MNIST_CLASSES
from retentive.evaluation import accuracy_row
from retentive.models import MLP, MultiHeadClassifier, PackedNetwork, ProgressiveNetwork

GROUPS = [list(g) for g in SPLIT_MNIST_CLASSES]
#: the DER paper's table (REFERENCE.md): class-IL unless marked task-IL
PUBLISHED = {"pnn": 99.23, "er200": 80.43, "mer200": 81.47, "mer500": 88.35}
TASK_IL = {"packnet", "pnn"}
QUIET = dict(QUIET_CPU, max_epochs=1)


class StepTimer(pl.Callback):
    """Wall time of every training step, batch start to batch end."""

    def __init__(self) -> None:
        self.seconds, self.steps, self._start = 0.0, 0, 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds += time.perf_counter() - self._start
        self.steps += 1


def make_updater(method: str, seed: int, previous: Path | None, output: Path, timer: StepTimer):
    loss = torch.nn.CrossEntropyLoss()
    sgd = lambda lr: partial(torch.optim.SGD, lr=lr)  # noqa: E731
    common = dict(input_state_folder=previous, output_state_folder=output, seed=seed, callbacks=[timer], **QUIET)
    if method == "packnet":
        model = PackedNetwork(MultiHeadClassifier.mlp(GROUPS, num_classes=10))
        return PackNetModelUpdater(model, loss, sgd(0.1), prune_ratio=0.5, post_prune_epochs=1, batch_size=10, **common)
    if method == "pnn":  # Mammoth's PNN lr 0.1
        return ProgressiveNetworkModelUpdater(
            ProgressiveNetwork(class_groups=GROUPS), loss, sgd(0.1), batch_size=10, **common
        )
    if method == "er200":  # the DER paper's best ER at memory 200
        return ExperienceReplayModelUpdater(
            MLP(init="xavier"), loss, sgd(0.01), memory_size=200, batch_size=10, memory_batch_size=10, **common
        )
    if method == "rar200":  # ER's settings plus RAR (Avalanche's defaults)
        return RetrospectiveAdversarialReplayModelUpdater(
            MLP(init="xavier"), loss, sgd(0.01), batch_size_mem=10, mem_size=200, batch_size=10, **common
        )
    if method in ("mer200", "mer500"):  # Mammoth: batch 1, minibatch 128, beta 1, gamma 1, 1 batch, lr 0.1
        return MetaExperienceReplayModelUpdater(
            MLP(init="xavier"),
            loss,
            sgd(0.1),
            memory_size=int(method[3:]),
            beta=1.0,
            gamma=1.0,
            batch_num=1,
            batch_size=1,
            memory_batch_size=128,
            **common,
        )
    if method in ("dgr", "dgr_sleep"):
        return GenerativeReplayModelUpdater(
            MLP(init="xavier"),
            loss,
            sgd(0.1),
            generator=VariationalAutoencoder((1, 28, 28)),
            replay_ratio=0.5,
            consolidation_steps=500 if method == "dgr_sleep" else 0,
            batch_size=32,
            **common,
        )
    raise ValueError(f"unknown method {method!r}")


def growth(state: Path, method: str) -> list[int] | None:
    """Parameters per task: a column's (progressive nets) or the weights a task owns (PackNet)."""
    architecture = json.loads((state / "manifest.json").read_text()).get("architecture", {})
    return architecture.get("parameters_per_column") or architecture.get("weights_per_task")


def run(method: str, seed: int, train: list[TensorChunk], test: list[TensorChunk]) -> dict[str, Any]:
    start = time.perf_counter()
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        previous = None
        for i, chunk in enumerate(train):
            torch.manual_seed(seed)
            state = Path(tmp) / f"chunk_{i}"
            model = make_updater(method, seed, previous, state, timer).update(chunk, task_id=i)
            previous = state
        final = accuracy_row(model, test)  # task ids routed for the task-IL models
        per_task = growth(previous, method)
    return {
        "method": method,
        "seed": seed,
        "setting": "task-IL" if method in TASK_IL else "class-IL",
        "accuracy": 100 * float(final.mean()),
        "per_task": [100 * v for v in final.tolist()],
        "parameters_per_task": per_task,
        "step_ms": 1000 * timer.seconds / max(1, timer.steps),
        "steps": timer.steps,
        "seconds": time.perf_counter() - start,
    }


def table(results: list[dict[str, Any]]) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["method"], []).append(r)
    lines = [
        "| method | setting | ACC % (mean ± std, seeds) | published | difference | step ms | parameters per task |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, rs in groups.items():
        accs = [r["accuracy"] for r in rs]
        mean, std = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
        published = PUBLISHED.get(method)
        diff = f"{mean - published:+.2f}" if published is not None else "-"
        step = statistics.mean(r["step_ms"] for r in rs)
        lines.append(
            f"| {method} | {rs[0]['setting']} | {mean:.2f} ± {std:.2f} ({len(accs)}) | {published or '-'} | {diff} "
            f"| {step:.2f} | {rs[0]['parameters_per_task'] or '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods", nargs="+", default=["packnet", "pnn", "er200", "rar200", "mer200", "mer500", "dgr", "dgr_sleep"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-per-chunk", type=int, default=None, help="subsample each training chunk (quick runs)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/architectures.json"))
    parser.add_argument("--report", nargs="+", type=Path, help="print the table of these result files and exit")
    args = parser.parse_args()
    if args.report:
        print(table([r for path in args.report for r in json.loads(path.read_text())]))
        return
    torch.set_num_threads(1)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        import logging

        logging.getLogger(name).setLevel(logging.ERROR)
    train_all, test_all = load_mnist("train"), load_mnist("test")
    results: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.exists() else []
    for method in args.methods:
        with_ids = method in TASK_IL
        train = split_mnist(train_all, with_task_ids=with_ids)
        if args.train_per_chunk:
            g = torch.Generator().manual_seed(0)
            train = [c.subset(torch.randperm(len(c), generator=g)[: args.train_per_chunk]) for c in train]
        test = split_mnist(test_all, with_task_ids=with_ids)
        for seed in args.seeds:
            result = run(method, seed, train, test)
            result["train_per_chunk"] = args.train_per_chunk
            results = [r for r in results if (r["method"], r["seed"]) != (method, seed)] + [result]
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))
            print(
                f"{method} seed {seed}: {result['accuracy']:.2f}% step {result['step_ms']:.2f} ms "
                f"({result['seconds']:.0f} s)",
                flush=True,
            )
    print(table(results))


if __name__ == "__main__":
    main()
