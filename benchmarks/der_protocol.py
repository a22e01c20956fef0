"""Seq-MNIST class-IL accuracy under the DER paper's protocol, every chunk through state folders.

Protocol (Buzzega et al., 2020; REFERENCE.md): 5 tasks of 2 digits, MLP 784-100-100-10, SGD
without momentum, 1 epoch per task, 10 new samples a step plus the paper's memory minibatch,
inputs in [0, 1], reservoir memory updated every step, the paper's best hyperparameters per
memory size, and Mammoth's Xavier initialisation of the MLP. Each chunk is one ``update()`` by a new updater that resumes from the previous
chunk's state folder, as a pipeline runs. The score is the mean accuracy over the five tasks'
test sets after the last task.

ER uses Renate's loss normalisation, which for equal new and memory minibatches is exactly the
paper's mean cross-entropy over the concatenated batch; DER and DER++ use the paper's plain sum
(``loss_normalization=False``). JOINT is one update over all five chunks; SGD is fine-tuning.

    python benchmarks/der_protocol.py [--seeds 0 1 2] [--methods er der derpp sgd joint] \
        [--memories 200 500 5120] [--out benchmarks/results/der_protocol.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from quiet_cpu import QUIET_CPU

from retentive import DarkExperienceReplayModelUpdater, ExperienceReplayModelUpdater, FineTuningModelUpdater
from retentive.data import TensorChunk, load_mnist, split_mnist
from retentive.evaluation import accuracy_row
from retentive.models import MLP

# (lr, memory minibatch, alpha, beta) per method and memory size: the DER paper's best arguments.
BEST = {
    "er": {200: (0.01, 10), 500: (0.1, 10), 5120: (0.1, 10)},
    "der": {200: (0.03, 10, 0.2), 500: (0.03, 128, 1.0), 5120: (0.1, 128, 0.5)},
    "derpp": {200: (0.03, 128, 0.2, 1.0), 500: (0.03, 10, 1.0, 0.5), 5120: (0.1, 64, 0.2, 0.5)},
}
PUBLISHED = {
    "er": {200: 80.43, 500: 86.12, 5120: 93.40},
    "der": {200: 84.55, 500: 90.54, 5120: 94.90},
    "derpp": {200: 85.61, 500: 91.00, 5120: 95.30},
    "joint": {None: 95.57},
    "sgd": {None: 19.60},
}
QUIET = dict(QUIET_CPU, max_epochs=1)


def make_updater(method: str, memory: int | None, seed: int, input_state: Path | None, output_state: Path):
    model = MLP(init="xavier")  # Mammoth's initialisation of this net
    loss = torch.nn.CrossEntropyLoss()
    folders = dict(input_state_folder=input_state, output_state_folder=output_state, seed=seed, **QUIET)
    if method in ("sgd", "joint"):
        return FineTuningModelUpdater(model, loss, partial(torch.optim.SGD, lr=0.03), batch_size=10, **folders)
    lr, minibatch, *weights = BEST[method][memory]
    common = dict(memory_size=memory, batch_size=10, memory_batch_size=minibatch, **folders)
    if method == "er":
        return ExperienceReplayModelUpdater(model, loss, partial(torch.optim.SGD, lr=lr), alpha=1.0, **common)
    alpha, beta = (weights[0], 0.0) if method == "der" else weights
    return DarkExperienceReplayModelUpdater(
        model, loss, partial(torch.optim.SGD, lr=lr), alpha=alpha, beta=beta, loss_normalization=False, **common
    )


def run(method: str, memory: int | None, seed: int, train: list[TensorChunk], test: list[TensorChunk]) -> dict:
    torch.manual_seed(seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if method == "joint":
            chunks = [TensorChunk(torch.cat([c.inputs for c in train]), torch.cat([c.targets for c in train]))]
        else:
            chunks = train
        previous = None
        for i, chunk in enumerate(chunks):
            torch.manual_seed(seed)  # the model built here is replaced by the saved weights from chunk 1 on
            state = Path(tmp) / f"chunk_{i}"
            model = make_updater(method, memory, seed, previous, state).update(chunk, task_id=i)
            previous = state
        final = accuracy_row(model, test)
    return {
        "method": method,
        "memory": memory,
        "seed": seed,
        "accuracy": 100 * float(final.mean()),
        "per_task": [100 * v for v in final.tolist()],
        "seconds": time.perf_counter() - start,
    }


def table(results: list[dict]) -> str:
    groups: dict[tuple[str, int | None], list[float]] = {}
    for r in results:
        groups.setdefault((r["method"], r["memory"]), []).append(r["accuracy"])
    lines = ["| method | memory | ACC % (mean ± std, seeds) | published | difference |", "|---|---|---|---|---|"]
    for (method, memory), accs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        mean = statistics.mean(accs)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        published = PUBLISHED[method].get(memory)
        diff = f"{mean - published:+.2f}" if published is not None else "-"
        lines.append(
            f"| {method.upper() if method != 'derpp' else 'DER++'} | {memory or '-'} | {mean:.2f} ± {std:.2f} ({len(accs)}) "
            f"| {published if published is not None else '-'} | {diff} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["sgd", "joint", "er", "der", "derpp"])
    parser.add_argument("--memories", type=int, nargs="+", default=[200, 500, 5120])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/der_protocol.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = split_mnist(load_mnist("train"))
    test = split_mnist(load_mnist("test"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["method"], r["memory"], r["seed"]) for r in results}
    for method in args.methods:
        for memory in [None] if method in ("sgd", "joint") else args.memories:
            for seed in args.seeds:
                if (method, memory, seed) in done:
                    continue
                result = run(method, memory, seed, train, test)
                results.append(result)
                args.out.write_text(json.dumps(results, indent=1))
                print(
                    f"{method:6s} memory {memory!s:5s} seed {seed}: {result['accuracy']:.2f}% in {result['seconds']:.0f} s",
                    flush=True,
                )
    print(table(results))


if __name__ == "__main__":
    main()
