"""Two checks behind the reduced Seq-CIFAR-10 findings (docs/benchmarks/cifar.md), on der_cifar.py's data and model.

``joint-trace``: JOINT trained one epoch per update, each update resuming from the last one's
state folder. SGD without momentum keeps no optimiser state, so this is the same training as one
update of several epochs, up to the shuffle order. After every epoch it records class-IL and task-IL
twice: once as saved, and once with BatchNorm's running statistics recomputed over the training
images. It also counts how many test images each class is predicted for. If the class-IL swings
from epoch to epoch while task-IL holds, the classifier's class bias is moving at the end of
training. If the recomputed statistics remove the swing, stale BatchNorm statistics cause it.

``memory-targets``: one ER, DER or DER++ run. It then reads the final memory and reports how often
the final model classifies the stored samples correctly. For DER and DER++ it also reports how
often the logits stored with each sample (the targets the method trains toward) pick the true
class, and the final model's mean squared distance to them. Poor targets would show as a low stored
accuracy. A model that fails to fit good targets would show as a high stored accuracy and a low
final one.

    python benchmarks/der_cifar_diagnose.py joint-trace --seed 1 --epochs 8 [--lr 0.1] --out R.json
    python benchmarks/der_cifar_diagnose.py memory-targets --method der --seed 0 --epochs 5 --out R.json
    (both: [--nf 20] [--subset 500] [--test-subset 200] [--threads 1])
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from der_cifar import benchmark_method, cifar_scenario

from retentive.benchmarking import run_scenario
from retentive.benchmarking.scenarios import Scenario
from retentive.data import TensorChunk, cifar10, concatenate
from retentive.data.transforms import cifar10_test_transform
from retentive.evaluation import accuracy_row
from retentive.state import load_state
from retentive.state.loading import load_model


def percent(value: float | torch.Tensor) -> float:
    return round(100 * float(value), 2)


def with_recomputed_batchnorm(model: torch.nn.Module, images: torch.Tensor, batch: int = 500) -> torch.nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are recomputed over ``images``: each
    batch of ``batch`` images counts once (``momentum=None``), so with equal batches the running
    mean is the images' mean (5,000 training images: ten batches of 500)."""
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average, not an exponential one
    fresh.train()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            fresh(images[start : start + batch])
    return fresh.eval()


def predicted_counts(model: torch.nn.Module, test: list[TensorChunk]) -> list[int]:
    """How many test images each of the 10 classes is predicted for."""
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(chunk.inputs).argmax(1) for chunk in test])
    return torch.bincount(predictions, minlength=10).tolist()


def evaluation(model: torch.nn.Module, test: list[TensorChunk]) -> dict[str, Any]:
    class_il = [percent(v) for v in accuracy_row(model, test).tolist()]
    task_il = [percent(v) for v in accuracy_row(model, test, task_aware=True).tolist()]
    return {
        "class_il": round(sum(class_il) / len(class_il), 2),
        "task_il": round(sum(task_il) / len(task_il), 2),
        "class_il_per_task": class_il,
        "predicted_per_class": predicted_counts(model, test),
    }


def joint_trace(args: argparse.Namespace, scenario: Scenario) -> list[dict[str, Any]]:
    """JOINT's class-IL and task-IL after every epoch, as saved and with BatchNorm recomputed."""
    joint = benchmark_method("joint", None, 1, "cpu", "32")  # der_cifar.py's JOINT, one epoch an update
    joint = replace(joint, optimizer_args={**joint.optimizer_args, "lr": args.lr})
    train, test = concatenate(list(scenario.train)), list(scenario.test)
    images = cifar10_test_transform()(train.inputs)  # normalised, not augmented
    trace, previous = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for epoch in range(1, args.epochs + 1):
            torch.manual_seed(args.seed)  # the model built here is replaced by the saved one from epoch 2 on
            state = Path(tmp) / f"epoch_{epoch}"
            updater = joint.build(
                scenario.model_factory(),
                input_state_folder=previous,
                output_state_folder=state,
                seed=args.seed + 1000 * (epoch - 1),  # a new shuffle order each epoch
            )
            model = updater.update(train, task_id=0)
            previous = state
            row = {"epoch": epoch, "saved": evaluation(model, test)}
            row["batchnorm_recomputed"] = evaluation(with_recomputed_batchnorm(model, images), test)
            trace.append(row)
            print(json.dumps({"epoch": epoch, **{k: row[k]["class_il"] for k in ("saved", "batchnorm_recomputed")}}))
    return trace


def memory_targets(args: argparse.Namespace, scenario: Scenario) -> dict[str, Any]:
    """One run of ``args.method``; its final model and its stored logits measured on its final memory."""
    method = benchmark_method(args.method, 500, args.epochs, "cpu", "32")
    with tempfile.TemporaryDirectory() as tmp:
        result = run_scenario(method, scenario, args.seed, tmp, keep_states="last")
        storage = load_state(result.final_state).memory["storage"]
        model = load_model(scenario.model_factory(), result.final_state).eval()
    targets = storage["targets"].long()
    with torch.no_grad():
        outputs = model(cifar10_test_transform()(storage["inputs"])).float()
    tasks, count = storage["task_ids"].long(), len(scenario.train)
    correct = outputs.argmax(1) == targets
    report: dict[str, Any] = {
        "class_il_per_task": [percent(v) for v in result.views["class-il"].matrix[-1]],
        "samples_per_task": torch.bincount(tasks, minlength=count).tolist(),
        "final_model_correct": percent(correct.float().mean()),
        "final_model_correct_per_task": [percent(correct[tasks == t].float().mean()) for t in range(count)],
    }
    report["class_il"] = round(sum(report["class_il_per_task"]) / count, 2)
    if "logits" in storage:
        stored = storage["logits"].float()
        right = stored.argmax(1) == targets
        report |= {
            "stored_logits_correct": percent(right.float().mean()),
            "stored_logits_correct_per_task": [percent(right[tasks == t].float().mean()) for t in range(count)],
            "final_model_agrees_with_stored": percent((outputs.argmax(1) == stored.argmax(1)).float().mean()),
            "final_model_mse_to_stored": round(float(torch.nn.functional.mse_loss(outputs, stored)), 4),
        }
    print(json.dumps(report))
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=("joint-trace", "memory-targets"))
    parser.add_argument("--method", choices=("er", "der", "derpp"), default="der", help="memory-targets only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5, help="joint-trace: epochs traced; else epochs per task")
    parser.add_argument("--lr", type=float, default=0.1, help="joint-trace's SGD learning rate (the protocol: 0.1)")
    parser.add_argument("--nf", type=int, default=20)
    parser.add_argument("--subset", type=int, default=500, help="training samples per class")
    parser.add_argument("--test-subset", type=int, default=200, help="test samples per class")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for name in ("epochs", "nf", "subset", "test_subset", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data = (cifar10(train=True), cifar10(train=False))
    scenario = cifar_scenario(args.seed, args.nf, (args.subset, args.test_subset), data)
    results = joint_trace(args, scenario) if args.check == "joint-trace" else memory_targets(args, scenario)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": settings, "torch": torch.__version__, "results": results}, indent=1))


if __name__ == "__main__":
    main()
