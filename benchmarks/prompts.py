"""Split-MNIST, class-incremental, for the prompt updaters (L2P, L2P + replay, S-Prompts),
Repeated Distillation and fine-tuning, all on the same tiny vision transformer.

Protocol: 5 tasks of 2 digits; ``--train-per-task`` training and ``--test-per-task`` test samples
of each task (drawn once, seed 0); the ViT is built from a config with random weights (28x28
inputs, 7x7 patches, width 64, 2 layers, 4 heads, MLP 128, no dropout): nothing can be
downloaded, so there is no pretrained backbone. Adam (lr ``--lr``), batch 32, ``--epochs`` [1]
epochs per task, memory 500 for the methods that keep one. Every chunk is one ``update()`` by a
new updater resuming from the previous chunk's state folder. Reported: the class-IL accuracy on
each task's test set after the last task (all ten outputs) and its mean; for S-Prompts also how
often the k-means task guess is right. ``l2p_cls`` and ``l2p_replay_cls`` feed the head the [CLS] output instead of the
mean of the prompt tokens (Renate's ``patch_pooler="cls"``); ``speft_task_heads`` gives S-Prompts a
head per task (``per_task_classifier=True``).

    nice -n 10 python benchmarks/prompts.py [--methods ...] [--seeds 0 1 2] [--lr 1e-3] [--epochs 1]

Results are appended to benchmarks/results/prompts.json (runs already there are skipped).
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

import torch
from quiet_cpu import QUIET_CPU

import retentive as R
from retentive.data import TensorChunk, load_mnist, split_mnist

RESULTS = Path(__file__).resolve().parent / "results" / "prompts.json"
ARCH = dict(
    image_size=28,
    patch_size=7,
    num_channels=1,
    hidden_dim=64,
    num_layers=2,
    num_heads=4,
    mlp_dim=128,
    dropout=0.0,
    attention_dropout=0.0,
)
QUIET = dict(QUIET_CPU, batch_size=32)
MEMORY = 500
#: name -> (model class, updater class, its arguments)
METHODS: dict[str, tuple[Any, Any, dict[str, Any]]] = {
    "fine_tuning": (R.VisionTransformer, R.FineTuningModelUpdater, {}),
    "l2p": (R.LearningToPromptTransformer, R.LearningToPromptModelUpdater, {}),
    "l2p_cls": (partial(R.LearningToPromptTransformer, patch_pooler="cls"), R.LearningToPromptModelUpdater, {}),
    "l2p_replay": (R.LearningToPromptTransformer, R.LearningToPromptReplayModelUpdater, dict(memory_size=MEMORY)),
    "l2p_replay_cls": (
        partial(R.LearningToPromptTransformer, patch_pooler="cls"),
        R.LearningToPromptReplayModelUpdater,
        dict(memory_size=MEMORY),
    ),
    "speft": (R.SPromptTransformer, R.SPeftModelUpdater, {}),
    "speft_task_heads": (partial(R.SPromptTransformer, per_task_classifier=True), R.SPeftModelUpdater, {}),
    "repeated_distillation": (R.VisionTransformer, R.RepeatedDistillationModelUpdater, dict(memory_size=MEMORY)),
}


def split(dataset: TensorChunk, per_task: int) -> list[TensorChunk]:
    g = torch.Generator().manual_seed(0)
    return [c.subset(torch.randperm(len(c), generator=g)[:per_task]) for c in split_mnist(dataset)]


@torch.no_grad()
def evaluate(model: torch.nn.Module, test: list[TensorChunk]) -> tuple[list[float], float | None]:
    model.eval()
    accuracies = [100 * float((model(c.inputs).argmax(-1) == c.targets).float().mean()) for c in test]
    task_guess = None
    if isinstance(model, R.SPromptTransformer):
        hits = [float((model.infer_task(c.inputs) == i).float().mean()) for i, c in enumerate(test)]
        task_guess = 100 * statistics.mean(hits)
    return accuracies, task_guess


def run(
    name: str, seed: int, lr: float, epochs: int, train: list[TensorChunk], test: list[TensorChunk]
) -> dict[str, Any]:
    model_cls, updater_cls, arguments = METHODS[name]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        previous = None
        for i, chunk in enumerate(train):
            torch.manual_seed(seed)  # the same random backbone for every method of a seed
            state = Path(tmp) / f"chunk_{i}"
            updater = updater_cls(
                model_cls(**ARCH),
                torch.nn.CrossEntropyLoss(reduction="none"),
                partial(torch.optim.Adam, lr=lr),
                seed=seed,
                input_state_folder=previous,
                output_state_folder=state,
                **arguments,
                **QUIET,
                max_epochs=epochs,
            )
            model = updater.update(chunk, task_id=f"task_{i}")
            previous = state
        per_task, task_guess = evaluate(model, test)
    result = {
        "method": name,
        "seed": seed,
        "lr": lr,
        "epochs": epochs,
        "class_il": statistics.mean(per_task),
        "per_task_class_il": per_task,
        "seconds": time.perf_counter() - start,
    }
    if task_guess is not None:
        result["task_identification"] = task_guess
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=1, help="max_epochs of every update [1]")
    parser.add_argument("--train-per-task", type=int, default=2000)
    parser.add_argument("--test-per-task", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = split(load_mnist("train"), args.train_per_task)
    test = split(load_mnist("test"), args.test_per_task)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    key = ("method", "seed", "lr", "train_per_task", "epochs")
    done = {tuple(r.get(k, 1 if k == "epochs" else None) for k in key) for r in results}
    for seed in args.seeds:
        for name in args.methods:
            if (name, seed, args.lr, args.train_per_task, args.epochs) in done:
                continue
            result = run(name, seed, args.lr, args.epochs, train, test)
            result.update(train_per_task=args.train_per_task, test_per_task=args.test_per_task)
            results.append(result)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1))
            extra = f", task guess {result['task_identification']:.1f}%" if "task_identification" in result else ""
            print(
                f"seed {seed} {name:22s} class-IL {result['class_il']:.2f}%{extra} "
                f"({result['seconds']:.0f} s) per task {[round(a, 1) for a in result['per_task_class_il']]}",
                flush=True,
            )
    summary: dict[str, list[float]] = {}
    for r in results:
        if r["lr"] == args.lr and r.get("train_per_task") == args.train_per_task and r.get("epochs", 1) == args.epochs:
            summary.setdefault(r["method"], []).append(r["class_il"])
    for name, values in summary.items():
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        print(f"{name:22s} class-IL {statistics.mean(values):.2f}{spread} over {len(values)} seeds")


if __name__ == "__main__":
    main()
