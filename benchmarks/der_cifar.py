"""Seq-CIFAR-10 class-IL and task-IL accuracy under the DER paper's protocol, through the benchmark harness.

Protocol (Buzzega et al., 2020, Table 2; REFERENCE.md): CIFAR-10 in 5 tasks of 2 classes,
ResNet-18 with the CIFAR stem (``nf`` base filters, 64 in the paper), 50 epochs per task, 32 new
+ 32 memory samples a step, reservoir memory updated every step, SGD without momentum with
Mammoth's best learning rate and alpha/beta per memory size, random crop 32 (padding 4) and
horizontal flip applied to new *and* replayed samples. Each chunk is one ``update()`` of a fresh
updater resuming from the previous chunk's state folder (:func:`retentive.benchmarking.run_scenario`),
as a pipeline runs. JOINT is one update over all five chunks; SGD is fine-tuning.

ER uses the normalised loss, which for equal new and memory batches is Mammoth's one
cross-entropy over the concatenated batch; DER and DER++ use the plain sum, as Mammoth does.
The data here is the shared JPEG re-encoding of CIFAR-10 (quality ~75): expect small differences
from the published figures. ``--epochs`` and ``--nf`` reduce the protocol (say so beside any
figure); ``--subset`` and ``--test-subset`` keep that many training and test samples per class.

    python benchmarks/der_cifar.py [--seeds 0] [--methods sgd joint er der derpp] [--memory 200 500] \
        [--epochs 50] [--nf 64] [--device cpu|cuda] [--precision 32|bf16-mixed] [--subset N] \
        [--test-subset N] [--threads 1] [--out benchmarks/results/der_cifar.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from retentive.benchmarking import BenchmarkMethod, build_scenario, run_scenario
from retentive.benchmarking.scenarios import Scenario
from retentive.data import TensorChunk, cifar10, concatenate
from retentive.data.transforms import cifar10_test_transform, cifar10_train_transform
from retentive.evaluation import accuracy_row
from retentive.models import ResNet18, prepare_model
from retentive.state.loading import load_model

# (lr, alpha, beta) per method and memory size: Mammoth's best_args for seq-cifar10 (REFERENCE.md).
BEST = {
    "er": {200: (0.1, 1.0, 0.0), 500: (0.1, 1.0, 0.0)},
    "der": {200: (0.03, 0.3, 0.0), 500: (0.03, 0.3, 0.0)},
    "derpp": {200: (0.03, 0.1, 0.5), 500: (0.03, 0.2, 0.5)},
}
BASELINE_LR = 0.1  # Mammoth's fine-tuning (sgd) and joint learning rate on seq-cifar10
# (class-IL, task-IL) after the last task, the DER paper's Table 2 (ten runs averaged).
PUBLISHED = {
    ("sgd", None): (19.62, 61.02),
    ("joint", None): (92.20, 98.31),
    ("er", 200): (44.79, 91.19),
    ("er", 500): (57.74, 93.61),
    ("der", 200): (61.93, 91.40),
    ("der", 500): (70.51, 93.40),
    ("derpp", 200): (64.88, 91.92),
    ("derpp", 500): (72.70, 93.88),
}
METHODS = ("sgd", "joint", "er", "der", "derpp")
BATCH = 32  # new samples a step; the memory batch is the same size


def benchmark_method(name: str, memory: int | None, epochs: int, device: str, precision: str) -> BenchmarkMethod:
    """The protocol's settings for ``name`` as a harness method (memory None for sgd and joint)."""
    augment = cifar10_train_transform()
    trainer: dict[str, Any] = {
        "max_epochs": epochs,
        "accelerator": "cpu" if device == "cpu" else "gpu",
        "devices": 1,
        "precision": precision,
        "batch_size": BATCH,
        "train_transform": augment,
        "test_transform": cifar10_test_transform(),
    }
    if name in ("sgd", "joint"):
        return BenchmarkMethod(name, "FineTuningModelUpdater", "SGD", {"lr": BASELINE_LR}, trainer)
    if name not in BEST:
        raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")
    lr, alpha, beta = BEST[name][memory]  # type: ignore[index]
    args = {**trainer, "memory_size": memory, "memory_batch_size": BATCH, "buffer_transform": augment}
    if name == "er":
        return BenchmarkMethod(
            name,
            "ExperienceReplayModelUpdater",
            "SGD",
            {"lr": lr},
            {**args, "alpha": alpha, "loss_normalization": True},
        )
    return BenchmarkMethod(
        name,
        "DarkExperienceReplayModelUpdater",
        "SGD",
        {"lr": lr},
        {**args, "alpha": alpha, "beta": beta, "loss_normalization": False},
    )


def _final_rows(scenario: Scenario, state: str, test: list[Any], device: str) -> tuple[list[float], list[float]]:
    """Class-IL and task-IL accuracy (%) per task of the model saved in ``state``."""
    model = load_model(scenario.model_factory(), state).to(device)
    return (
        [100 * v for v in accuracy_row(model, test, device=device).tolist()],
        [100 * v for v in accuracy_row(model, test, task_aware=True, device=device).tolist()],
    )


def run(method: BenchmarkMethod, memory: int | None, seed: int, scenario: Scenario, device: str) -> dict[str, Any]:
    """One run of ``method`` on ``scenario`` (JOINT: one update over the concatenated chunks)."""
    test = list(scenario.test)
    if method.name == "joint":
        scenario = replace(
            scenario,
            name=scenario.name + "-joint",
            train=[concatenate(list(scenario.train))],
            test=[concatenate(test)],
            chunk_names=("all tasks",),
            views={"class-il": False},
        )
    with tempfile.TemporaryDirectory() as tmp:
        result = run_scenario(method, scenario, seed, tmp, keep_states="last", device=device)
        if method.name == "joint":
            class_il, task_il = _final_rows(scenario, str(result.final_state), test, device)
        else:
            class_il, task_il = ([100 * v for v in result.views[view].matrix[-1]] for view in ("class-il", "task-il"))
    return {
        "method": method.name,
        "memory": memory,
        "seed": seed,
        "accuracy": statistics.mean(class_il),
        "task_il": statistics.mean(task_il),
        "per_task": class_il,
        "per_task_task_il": task_il,
        "seconds": result.total_seconds,
        "update_seconds": result.update_seconds,
        "evaluation_seconds": result.evaluation_seconds,
        "views": {view: vars(v) for view, v in result.views.items()},
    }


def per_class(chunk: TensorChunk, n: int | None, seed: int) -> TensorChunk:
    """At most ``n`` samples of each class of ``chunk``, drawn at random (``None``: all)."""
    if n is None:
        return chunk
    g = torch.Generator().manual_seed(seed)
    picks = [torch.nonzero(chunk.targets == c).flatten() for c in torch.unique(chunk.targets).tolist()]
    return chunk.subset(torch.cat([p[torch.randperm(len(p), generator=g)[:n]] for p in picks]).sort().values)


def resnet(nf: int, channels_last: bool) -> torch.nn.Module:
    """The protocol's ResNet-18 for 10 classes (its kernels channels-last on request)."""
    return prepare_model(ResNet18(10, nf), channels_last=channels_last)


def cifar_scenario(
    seed: int,
    nf: int,
    subsets: tuple[int | None, int | None],
    data: tuple[TensorChunk, TensorChunk],
    channels_last: bool = False,
) -> Scenario:
    """The harness's Seq-CIFAR-10 on uint8 training images (the updater's transforms crop, flip and
    normalise them, new and replayed alike; the memory keeps uint8) and test images normalised
    once, as the test transform would; ``subsets``: (train, test) samples per class."""
    train, test = per_class(data[0], subsets[0], seed), per_class(data[1], subsets[1], seed + 1)
    normalized = TensorChunk(cifar10_test_transform()(test.inputs), test.targets)
    scenario = build_scenario("seq-cifar10", seed, data=(train, normalized))
    return replace(scenario, model_factory=partial(resnet, nf, channels_last))


def device_name(device: str) -> str:
    """The card's name for a CUDA device, else the CPU's."""
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def table(results: list[dict[str, Any]]) -> str:
    """Mean ± std per (method, memory) beside the paper's full-protocol figures."""
    groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["method"], r["memory"]), []).append(r)
    lines = [
        "| method | memory | class-IL % | task-IL % | runs | published (full protocol) | seconds per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for (method, memory), runs in sorted(groups.items(), key=lambda kv: (METHODS.index(kv[0][0]), kv[0][1] or 0)):
        cells = []
        for key in ("accuracy", "task_il"):
            values = [r[key] for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.2f} ± {std:.2f}")
        published = PUBLISHED.get((method, memory))
        paper = "—" if published is None else f"{published[0]:.2f} / {published[1]:.2f}"
        seconds = statistics.mean(r["seconds"] for r in runs)
        label = "DER++" if method == "derpp" else method.upper()
        lines.append(f"| {label} | {memory or '—'} | {cells[0]} | {cells[1]} | {len(runs)} | {paper} | {seconds:.0f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--memory", type=int, nargs="+", choices=(200, 500), default=[200, 500])
    parser.add_argument("--epochs", type=int, default=50, help="epochs per task (the paper: 50)")
    parser.add_argument("--nf", type=int, default=64, help="ResNet-18 base filters (the paper: 64)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="32", help="Lightning precision: 32, bf16-mixed, 16-mixed")
    parser.add_argument("--subset", type=int, default=None, help="training samples per class (default: all 5,000)")
    parser.add_argument(
        "--test-subset", type=int, default=None, help="test samples per class (default: --subset, else all 1,000)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--channels-last", action="store_true", help="ResNet-18's kernels channels-last (GPU)")
    parser.add_argument("--report", action="store_true", help="print the table of --out's runs and exit")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/der_cifar.json"))
    args = parser.parse_args(argv)
    if args.test_subset is None:
        args.test_subset = args.subset
    for name in ("epochs", "nf", "threads", "subset", "test_subset"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1, got {value}")
    return args


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a run's figures depend on beyond method, memory and seed: part of every result."""
    return {
        "epochs": args.epochs,
        "nf": args.nf,
        "subset": args.subset,
        "test_subset": args.test_subset,
        "precision": args.precision,
        "device": args.device,
        "device_name": device_name(args.device),
        "threads": args.threads,
        "channels_last": args.channels_last,
        "torch": torch.__version__,
    }


def run_missing(args: argparse.Namespace, common: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """Run every (seed, method, memory) of ``args`` not yet in ``results``, saving after each run."""
    data = (cifar10(train=True), cifar10(train=False))
    keys = ("method", "memory", "seed", "epochs", "nf", "subset", "test_subset", "precision", "device")
    done = {tuple(r.get(k) for k in keys) for r in results}
    for seed in args.seeds:
        scenario = cifar_scenario(seed, args.nf, (args.subset, args.test_subset), data, args.channels_last)
        for name in args.methods:
            for memory in [None] if name in ("sgd", "joint") else args.memory:
                if tuple({"method": name, "memory": memory, "seed": seed, **common}.get(k) for k in keys) in done:
                    continue
                method = benchmark_method(name, memory, args.epochs, args.device, args.precision)
                result = {**run(method, memory, seed, scenario, args.device), **common}
                results.append(result)
                args.out.write_text(json.dumps(results, indent=1, default=repr))
                print(
                    f"{name:6s} memory {memory!s:5s} seed {seed}: class-IL {result['accuracy']:.2f} "
                    f"task-IL {result['task_il']:.2f} in {result['seconds']:.0f} s",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    if args.report:
        print(table(results) if results else f"no runs in {args.out}")
        return
    torch.set_num_threads(args.threads)
    common = settings(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    run_missing(args, common, results)
    same = ("epochs", "nf", "subset", "test_subset", "precision", "device")
    print(table([r for r in results if all(r.get(k) == common[k] for k in same)]))


if __name__ == "__main__":
    main()
