"""Memory selection: speed over all of MNIST, and Seq-MNIST class-IL accuracy per policy.

``timing``: herding and k-center over the 60,000 MNIST training samples, with the features of
the MLP 784-100-100-10's penultimate layer (100 floats per sample), median of ``--repeats`` runs,
one torch thread. Reported: the pure selection on precomputed features, and the whole update-end
policy (features in batches + selection + rewriting the memory) over a chunk of all 60,000.

``accuracy``: the DER paper's Seq-MNIST protocol of ``benchmarks/der_protocol.py`` (its
hyperparameters, initialisation and state-folder chaining), ER and DER++ at memory 200 and 500,
with each memory policy in place of the reservoir (the update-end policies run in the updater's
own update-end hook). Also records the seconds each update spent
in the policy's update-end selection.

    python benchmarks/selection.py timing [--repeats 5]
    python benchmarks/selection.py accuracy [--seeds 0 1 2] [--policies ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from quiet_cpu import QUIET_CPU

from retentive import DarkExperienceReplayModelUpdater, ExperienceReplayModelUpdater
from retentive.data import TensorChunk, load_mnist, split_mnist
from retentive.evaluation import accuracy_row
from retentive.memory import ChunkContext, ReplayBuffer, policy_from_name
from retentive.memory.selection import class_quotas, herding, k_center_greedy
from retentive.memory.update_end import candidate_features
from retentive.models import MLP

UPDATE_END = ("herding", "k_center", "gradient_diversity", "forgetting")
ALL_POLICIES = ("reservoir", "class_balanced_reservoir", "ring_buffer", *UPDATE_END)


CPU_SECONDS: dict[str, float] = {}


def _median_seconds(work, repeats: int, label: str | None = None) -> float:
    """Median wall seconds of ``work``; the median CPU seconds of this process go to ``CPU_SECONDS``."""
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        work()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    if label is not None:
        CPU_SECONDS[label] = statistics.median(cpu)
    return statistics.median(times)


def timing(repeats: int) -> dict:
    train = load_mnist("train")
    chunk = TensorChunk(train.inputs.reshape(len(train), -1).float(), train.targets)
    torch.manual_seed(0)
    model = MLP(init="xavier").eval()
    memory = ReplayBuffer(500, policy=policy_from_name("herding"))
    ctx = ChunkContext(model, memory, chunk)
    load = os.getloadavg()
    out: dict = {
        "load_average_before": load,
        "samples": len(chunk),
        "feature_dim": 100,
        "batch_size": 1024,
        "repeats": repeats,
        "rows": [],
    }
    features_s = _median_seconds(lambda: candidate_features(ctx, None, 1024), repeats, "features")
    features, targets, _ = candidate_features(ctx, None, 1024)
    out["features_seconds"] = features_s
    for capacity in (500, 2000):
        quotas = class_quotas(torch.bincount(targets), capacity)
        row = {"capacity": capacity}
        row["herding_s"] = _median_seconds(
            lambda q=quotas: herding(features, targets, q), repeats, f"herding_{capacity}"
        )
        row["k_center_s"] = _median_seconds(
            lambda c=capacity: k_center_greedy(features, c), repeats, f"k_center_{capacity}"
        )
        for name in ("herding", "k_center"):

            def policy_run(name=name, capacity=capacity) -> None:
                mem = ReplayBuffer(capacity, policy=policy_from_name(name))
                mem.policy.attach(model, capacity)
                mem.policy.on_update_end(ChunkContext(model, mem, chunk))

            row[f"{name}_policy_s"] = _median_seconds(policy_run, repeats, f"{name}_policy_{capacity}")
        # the bound: features N x D float32, herding's padded per-class copy, k-center's distances
        per_class = int(torch.bincount(targets).max())
        row["bound_mb"] = {
            "features": features.numel() * 4 / 2**20,
            "herding_padded": 10 * per_class * features.shape[1] * 4 / 2**20,
            "k_center_distances": features.shape[0] * 8 / 2**20,
        }
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
    out["cpu_seconds"] = dict(CPU_SECONDS)
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out["cpu_seconds"]), flush=True)
    return out


# ------------------------------------------------------------------------------------ accuracy
BEST = {  # the DER paper's best (lr, memory minibatch, alpha, beta), as in der_protocol.py
    "er": {200: (0.01, 10), 500: (0.1, 10)},
    "derpp": {200: (0.03, 128, 0.2, 1.0), 500: (0.03, 10, 1.0, 0.5)},
}
QUIET = dict(QUIET_CPU, max_epochs=1)


def make_updater(method: str, policy: str, memory: int, seed: int, input_state: Path | None, output_state: Path):
    model = MLP(init="xavier")
    loss = torch.nn.CrossEntropyLoss()
    lr, minibatch, *weights = BEST[method][memory]
    common = dict(
        memory_size=memory,
        batch_size=10,
        memory_batch_size=minibatch,
        memory_policy=policy_from_name(policy),
        input_state_folder=input_state,
        output_state_folder=output_state,
        seed=seed,
        **QUIET,
    )
    if method == "er":
        return ExperienceReplayModelUpdater(model, loss, partial(torch.optim.SGD, lr=lr), alpha=1.0, **common)
    alpha, beta = weights
    cls = DarkExperienceReplayModelUpdater
    return cls(model, loss, partial(torch.optim.SGD, lr=lr), alpha=alpha, beta=beta, loss_normalization=False, **common)


def run(method: str, policy: str, memory: int, seed: int, train: list, test: list) -> dict:
    start = time.perf_counter()
    selection, updates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        previous = None
        for i, chunk in enumerate(train):
            torch.manual_seed(seed)
            state = Path(tmp) / f"chunk_{i}"
            updater = make_updater(method, policy, memory, seed, previous, state)
            hook = getattr(updater.memory.policy, "on_update_end", None)
            if hook is not None:

                def timed(ctx, hook=hook) -> None:
                    t0 = time.perf_counter()
                    hook(ctx)
                    selection.append(time.perf_counter() - t0)

                updater.memory.policy.on_update_end = timed
            t0 = time.perf_counter()
            model = updater.update(chunk, task_id=i)
            updates.append(time.perf_counter() - t0)
            previous = state
        final = accuracy_row(model, test)
    return {
        "method": method,
        "policy": policy,
        "memory": memory,
        "seed": seed,
        "accuracy": 100 * float(final.mean()),
        "per_task": [100 * v for v in final.tolist()],
        "update_seconds": updates,
        "selection_seconds": selection,
        "seconds": time.perf_counter() - start,
    }


def table(results: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["method"], r["memory"], r["policy"]), []).append(r)
    lines = [
        "| method | memory | policy | ACC % (mean ± std, seeds) | update s (median) | selection s per update (median) |",
        "|---|---|---|---|---|---|",
    ]
    order = {p: i for i, p in enumerate(ALL_POLICIES)}
    for (method, memory, policy), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], order[kv[0][2]])):
        accs = [r["accuracy"] for r in rs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        upd = statistics.median(s for r in rs for s in r["update_seconds"])
        sel = [s for r in rs for s in r["selection_seconds"]]
        lines.append(
            f"| {'ER' if method == 'er' else 'DER++'} | {memory} | {policy} | {statistics.mean(accs):.2f} ± {std:.2f} "
            f"({len(accs)}) | {upd:.1f} | {statistics.median(sel) if sel else 0:.2f} |"
        )
    return "\n".join(lines)


def accuracy(args: argparse.Namespace) -> None:
    train = split_mnist(load_mnist("train"))
    test = split_mnist(load_mnist("test"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["method"], r["policy"], r["memory"], r["seed"]) for r in results}
    for memory in args.memories:
        for method in args.methods:
            for policy in args.policies:
                for seed in args.seeds:
                    if (method, policy, memory, seed) in done:
                        continue
                    result = run(method, policy, memory, seed, train, test)
                    results.append(result)
                    args.out.write_text(json.dumps(results, indent=1))
                    print(
                        f"{method:5s} {memory:4d} {policy:24s} seed {seed}: {result['accuracy']:.2f}% "
                        f"in {result['seconds']:.0f} s",
                        flush=True,
                    )
    print(table(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("timing")
    t.add_argument("--repeats", type=int, default=5)
    t.add_argument("--out", type=Path, default=Path("benchmarks/results/selection_timing.json"))
    a = sub.add_parser("accuracy")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a.add_argument("--methods", nargs="+", default=["er", "derpp"])
    a.add_argument("--memories", type=int, nargs="+", default=[200, 500])
    a.add_argument("--policies", nargs="+", default=list(ALL_POLICIES))
    a.add_argument("--out", type=Path, default=Path("benchmarks/results/selection_accuracy.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "timing":
        result = timing(args.repeats)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    else:
        accuracy(args)


if __name__ == "__main__":
    main()
