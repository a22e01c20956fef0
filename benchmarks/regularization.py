"""Seq-MNIST under the DER paper's protocol for oEWC, SI, LwF, GEM, A-GEM, iCaRL and EWC + ER,
class-IL and task-IL, every chunk through state folders; and step time beside ER's.

Protocol (Buzzega et al., 2020; REFERENCE.md): 5 tasks of 2 digits, MLP 784-100-100-10 with
Mammoth's Xavier initialisation, SGD without momentum, 1 epoch per task, 10 new samples a step,
inputs in [0, 1], Mammoth's tuned arguments per method (below). Each chunk is one ``update()`` by
a new updater resuming from the previous chunk's state folder. Class-IL accuracy is the mean over
the five test sets after the last task with all ten outputs; task-IL masks the outputs to the
task's two classes (Mammoth's single-head task-IL). iCaRL is scored with its nearest-mean-of-
exemplars classifier, read back from the last state folder.

    python benchmarks/regularization.py accuracy [--methods ...] [--seeds 0 1 2]
    python benchmarks/regularization.py steptime [--methods ...] [--rounds 3]

Results are appended to benchmarks/results/regularization.json (runs already there are skipped).
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

import retentive as R
from retentive.components.distillation import icarl_classifier
from retentive.data import TensorChunk, load_mnist, split_mnist
from retentive.models import MLP

QUIET = dict(QUIET_CPU, max_epochs=1)
#: name -> (memory, lr, updater class, its arguments, published (class-IL, task-IL))
#: Mammoth's tuned settings (REFERENCE.md); EWC's lambda is discussed in docs/benchmarks/accuracy.md.
METHODS: dict[str, tuple[int | None, float, Any, dict[str, Any], tuple[float, float] | None]] = {
    "sgd": (None, 0.03, R.FineTuningModelUpdater, {}, (19.60, 94.94)),
    "oewc": (
        None,
        0.03,
        R.ElasticWeightConsolidationModelUpdater,
        dict(ewc_lambda=90.0, ewc_gamma=1.0),
        (20.46, 98.39),
    ),
    "oewc_l1": (
        None,
        0.03,
        R.ElasticWeightConsolidationModelUpdater,
        dict(ewc_lambda=1.0, ewc_gamma=1.0),
        (20.46, 98.39),
    ),
    "oewc_l10": (
        None,
        0.03,
        R.ElasticWeightConsolidationModelUpdater,
        dict(ewc_lambda=10.0, ewc_gamma=1.0),
        (20.46, 98.39),
    ),
    "si": (None, 0.1, R.SynapticIntelligenceModelUpdater, dict(si_c=1.0, si_epsilon=0.9), (19.27, 96.00)),
    "lwf": (None, 0.03, R.LearningWithoutForgettingModelUpdater, dict(alpha=1.0, temperature=2.0), (19.62, 94.11)),
    "gem200": (200, 0.01, R.GradientEpisodicMemoryModelUpdater, dict(memory_strength=1.0), (80.11, 97.78)),
    "gem500": (500, 0.03, R.GradientEpisodicMemoryModelUpdater, dict(memory_strength=0.5), (85.99, 98.71)),
    "agem200": (200, 0.1, R.AveragedGradientEpisodicMemoryModelUpdater, dict(sample_size=128), (45.72, 98.61)),
    "agem500": (500, 0.1, R.AveragedGradientEpisodicMemoryModelUpdater, dict(sample_size=128), (46.66, 98.93)),
    "icarl200": (200, 0.1, R.ICaRLModelUpdater, dict(memory_batch_size=10), (70.51, 98.28)),
    "icarl500": (500, 0.1, R.ICaRLModelUpdater, dict(memory_batch_size=10), (70.10, 98.32)),
    "er500": (500, 0.1, R.ExperienceReplayModelUpdater, dict(memory_batch_size=10), (86.12, 99.04)),
    "er500_ewc": (500, 0.1, R.ModelUpdater, dict(memory_batch_size=10), None),
}
WEIGHT_DECAY = {"lwf": 5e-4}
EWC_WITH_ER = 1.0  # the lambda of EWC beside ER (stable with lr 0.1; see docs/benchmarks/accuracy.md)


def make_updater(name: str, seed: int, input_state: Path | None, output_state: Path | None) -> R.ModelUpdater:
    memory, lr, cls, arguments, _ = METHODS[name]
    optimizer = partial(torch.optim.SGD, lr=lr, weight_decay=WEIGHT_DECAY.get(name, 0.0))
    common: dict[str, Any] = dict(
        batch_size=10, seed=seed, input_state_folder=input_state, output_state_folder=output_state, **QUIET
    )
    if memory is not None:
        common["memory_size"] = memory
    if name == "er500_ewc":
        arguments = dict(arguments, components=[R.MemoryCrossEntropy(1.0), R.ElasticWeightConsolidation(EWC_WITH_ER)])
    return cls(MLP(init="xavier"), torch.nn.CrossEntropyLoss(), optimizer, **arguments, **common)


@torch.no_grad()
def scores(model: torch.nn.Module, test: list[TensorChunk]) -> tuple[list[float], list[float]]:
    """Per task: class-IL accuracy (all outputs) and task-IL accuracy (the task's classes only)."""
    model.eval()
    class_il, task_il = [], []
    for chunk in test:
        out = model(chunk.inputs)
        classes = torch.unique(chunk.targets)
        masked = torch.full_like(out, float("-inf"))
        masked[:, classes] = out[:, classes]
        class_il.append(100 * float((out.argmax(-1) == chunk.targets).float().mean()))
        task_il.append(100 * float((masked.argmax(-1) == chunk.targets).float().mean()))
    return class_il, task_il


def run(name: str, seed: int, train: list[TensorChunk], test: list[TensorChunk]) -> dict[str, Any]:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        previous = None
        for i, chunk in enumerate(train):
            torch.manual_seed(seed)  # the model built here is replaced by the saved weights from chunk 1 on
            state = Path(tmp) / f"chunk_{i}"
            model = make_updater(name, seed, previous, state).update(chunk, task_id=i)
            previous = state
        if name.startswith("icarl"):
            model = icarl_classifier(MLP(init="xavier"), previous)
        class_il, task_il = scores(model, test)
    return {
        "method": name,
        "seed": seed,
        "class_il": statistics.mean(class_il),
        "task_il": statistics.mean(task_il),
        "per_task_class_il": class_il,
        "per_task_task_il": task_il,
        "seconds": time.perf_counter() - start,
    }


class _StepClock(pl.Callback):
    """Wall time of the training steps after the first ``skip`` (no setup, no update-end work)."""

    def __init__(self, skip: int = 20) -> None:
        self.skip, self.start, self.end, self.steps = skip, (0.0, 0.0), (0.0, 0.0), 0

    def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.skip:
            self.start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer: pl.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.end, self.steps = (time.perf_counter(), time.process_time()), batch_idx + 1 - self.skip


def step_time(names: list[str], rounds: int, train: list[TensorChunk], steps: int = 300) -> list[dict[str, Any]]:
    """ms per training step of the second update (penalties, constraints and teachers active),
    each method right after ER in every round, over ``steps`` steps of chunk 1 (the first 20 not
    timed); update-end work (Fisher, herding, memory filling) is reported separately."""
    results = []
    for r in range(rounds):
        for name in names:
            for method in ("er500", name):
                torch.manual_seed(0)
                updater = make_updater(method, 0, None, None)
                updater.update(train[0].subset(torch.arange(2000)), task_id=0)
                clock = _StepClock()
                updater.callbacks.append(clock)
                begin = time.perf_counter()
                updater.update(train[1].subset(torch.arange(10 * steps)), task_id=1)
                total = time.perf_counter() - begin
                wall, cpu = (1000 * (clock.end[i] - clock.start[i]) / clock.steps for i in (0, 1))
                results.append(
                    {
                        "round": r,
                        "pair": name,
                        "method": method,
                        "ms_per_step": wall,
                        "cpu_ms_per_step": cpu,
                        "update_seconds": total,
                    }
                )
                print(
                    f"round {r} {method:10s} {wall:.2f} ms/step wall, {cpu:.2f} CPU, whole update {total:.2f} s",
                    flush=True,
                )
    return results


def table(results: list[dict[str, Any]]) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if "class_il" in r:
            groups.setdefault(r["method"], []).append(r)
    lines = [
        "| method | memory | class-IL % | published | task-IL % | published | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    failed = [r for r in results if "failed" in r]
    for name, runs in groups.items():
        memory, *_, published = METHODS[name]
        cells = []
        for key in ("class_il", "task_il"):
            values = [r[key] for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.2f} ± {std:.2f}")
        pub = published or ("-", "-")
        lines.append(f"| {name} | {memory or '-'} | {cells[0]} | {pub[0]} | {cells[1]} | {pub[1]} | {len(runs)} |")
    lines += [f"\n{r['method']} seed {r['seed']} failed: {r['failed']}" for r in failed]
    steps: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        if "cpu_ms_per_step" in r:
            steps.setdefault(r["pair"], []).append((r["cpu_ms_per_step"], r["ms_per_step"]))
    if steps:
        lines += [
            "",
            "| method | ms/step CPU (median) | ER ms/step CPU beside it | ratio | wall ratio |",
            "|---|---|---|---|---|",
        ]
        for pair in dict.fromkeys(r["pair"] for r in results if "pair" in r):
            mine = [r for r in results if r.get("pair") == pair and r["method"] == pair]
            er = [r for r in results if r.get("pair") == pair and r["method"] == "er500"]
            m_cpu = statistics.median(r["cpu_ms_per_step"] for r in mine)
            e_cpu = statistics.median(r["cpu_ms_per_step"] for r in er)
            m_wall = statistics.median(r["ms_per_step"] for r in mine)
            e_wall = statistics.median(r["ms_per_step"] for r in er)
            lines.append(f"| {pair} | {m_cpu:.2f} | {e_cpu:.2f} | {m_cpu / e_cpu:.2f}x | {m_wall / e_wall:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["accuracy", "steptime", "table"])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=[
            "oewc_l1",
            "si",
            "lwf",
            "gem200",
            "gem500",
            "agem200",
            "agem500",
            "icarl200",
            "icarl500",
            "er500",
            "er500_ewc",
        ],
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/regularization.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    if args.mode == "table":
        print(table(results))
        return
    train, test = split_mnist(load_mnist("train")), split_mnist(load_mnist("test"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.mode == "steptime":
        results += step_time([m for m in args.methods if m != "er500"], args.rounds, train)
        args.out.write_text(json.dumps(results, indent=1))
        return
    done = {(r["method"], r["seed"]) for r in results if "class_il" in r}
    for name in args.methods:
        for seed in args.seeds:
            if (name, seed) in done:
                continue
            try:
                result = run(name, seed, train, test)
            except R.NonFiniteLossError as error:
                result = {"method": name, "seed": seed, "failed": str(error)}
                print(f"{name} seed {seed}: FAILED {error}", flush=True)
            else:
                print(
                    f"{name:10s} seed {seed}: class-IL {result['class_il']:.2f} task-IL {result['task_il']:.2f} "
                    f"in {result['seconds']:.0f} s",
                    flush=True,
                )
            results.append(result)
            args.out.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
