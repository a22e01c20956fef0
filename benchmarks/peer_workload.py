"""The peer workload of REFERENCE.md, with retentive's defaults and with each accuracy option.

Split-MNIST class-IL (5 chunks of 2 digits, the whole training set), MLP 784-100-100-10
(PyTorch's default initialisation), memory 500, 32 new + 32 memory samples a step, SGD lr 0.03,
plain sum of the terms (``loss_normalization=False``), 1 epoch, one process, one torch thread,
every chunk one ``update()`` through the public API. Avalanche 0.6.0's and a plain PyTorch loop's
figures on the same workload are in REFERENCE.md / issue 10 (measured there, not here).

Variants (each documented on :class:`retentive.ModelUpdater`):
- ``default``: Renate's behaviour (memory updated after every step, logits stored at insertion);
- ``update_end``: ``memory_insertion="update_end"`` — the chunk enters the memory once the update
  has trained, so replay batches hold earlier chunks only (as Avalanche's replay does);
- ``refresh``: ``refresh_memory_metadata=True`` (DER++) — the logits of the samples an update
  inserted are recomputed by the trained model in eval mode;
- ``balanced``: a class-balanced reservoir (``ClassBalancedReservoirPolicy``);
- ``mean``: Renate's normalised total instead of the plain sum; with equal new and memory
  batches it is the mean over the concatenated batch, which is what Avalanche's replay computes;
- combinations joined with ``+``.

    python benchmarks/peer_workload.py [--seeds 0 1 2 3 4 5 6] [--methods er derpp] \
        [--variants default update_end refresh] [--out benchmarks/results/peer_workload.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from quiet_cpu import QUIET_CPU

import retentive.memory as memory_module
from retentive import DarkExperienceReplayModelUpdater, ExperienceReplayModelUpdater
from retentive.data import load_mnist, split_mnist
from retentive.evaluation import accuracy_row
from retentive.models import MLP

QUIET = dict(QUIET_CPU, max_epochs=1)


def options(variant: str) -> dict:
    chosen: dict = {}
    for part in variant.split("+"):
        if part == "default":
            continue
        if part == "update_end":
            chosen["memory_insertion"] = "update_end"
        elif part == "mean":
            chosen["loss_normalization"] = True
        elif part == "refresh":
            chosen["refresh_memory_metadata"] = True
        elif part == "balanced":
            policy = getattr(memory_module, "ClassBalancedReservoirPolicy", None)
            if policy is None:
                raise SystemExit("ClassBalancedReservoirPolicy is not available in this build")
            chosen["memory_policy"] = policy()
        else:
            raise SystemExit(f"unknown variant part {part!r}")
    return chosen


def run(method: str, variant: str, seed: int, train, test, tmp: Path) -> dict:
    start = time.perf_counter()
    previous = None
    for i, chunk in enumerate(train):
        torch.manual_seed(seed)  # the model built here is replaced by the saved weights from chunk 1 on
        folder = tmp / f"{method}_{variant}_{seed}_{i}"
        common = dict(
            memory_size=500,
            batch_size=32,
            memory_batch_size=32,
            loss_normalization=False,
            seed=seed,
            input_state_folder=previous,
            output_state_folder=folder,
            **QUIET,
        )
        common.update(options(variant))
        sgd = partial(torch.optim.SGD, lr=0.03)
        if method == "er":
            updater = ExperienceReplayModelUpdater(MLP(), torch.nn.CrossEntropyLoss(), sgd, **common)
        else:
            updater = DarkExperienceReplayModelUpdater(MLP(), torch.nn.CrossEntropyLoss(), sgd, **common)
        model = updater.update(chunk, task_id=i)
        previous = folder
    final = accuracy_row(model, test)
    return {
        "method": method,
        "variant": variant,
        "seed": seed,
        "accuracy": 100 * float(final.mean()),
        "seconds": time.perf_counter() - start,
    }


def table(results: list[dict]) -> str:
    groups: dict[tuple[str, str], list[float]] = {}
    for r in results:
        groups.setdefault((r["method"], r["variant"]), []).append(r["accuracy"])
    lines = ["| method | variant | ACC % mean ± std (seeds) | runs |", "|---|---|---|---|"]
    for (method, variant), accs in sorted(groups.items()):
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(
            f"| {'ER' if method == 'er' else 'DER++'} | {variant} | {statistics.mean(accs):.2f} ± {std:.2f} "
            f"({len(accs)}) | {', '.join(f'{a:.2f}' for a in accs)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(7)))
    parser.add_argument("--methods", nargs="+", default=["er", "derpp"])
    parser.add_argument("--variants", nargs="+", default=["default", "update_end", "refresh"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/peer_workload.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, test = split_mnist(load_mnist("train")), split_mnist(load_mnist("test"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["method"], r["variant"], r["seed"]) for r in results}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            for variant in args.variants:
                if method == "er" and "refresh" in variant:
                    continue  # ER stores no metadata to refresh
                for seed in args.seeds:
                    if (method, variant, seed) in done:
                        continue
                    result = run(method, variant, seed, train, test, Path(tmp))
                    results.append(result)
                    args.out.write_text(json.dumps(results, indent=1))
                    print(
                        f"{method:5s} {variant:18s} seed {seed}: {result['accuracy']:.2f}% in {result['seconds']:.0f} s",
                        flush=True,
                    )
    print(table(results))


if __name__ == "__main__":
    main()
