"""How much a deleted memory sample still shapes the model: with and without a refit, on real MNIST.

Per seed: ER (MLP 784-100-100-10, memory ``--memory``) learns Split-MNIST class-incremental, five
chunks of ``--per-class`` samples per class, each chunk through a state folder. Then
``--delete`` samples, drawn from the final memory, are deleted from it, and the model is measured
on four sets of samples:

* **deleted**: the samples removed from the memory (what a deletion request names);
* **never seen**: held-out MNIST training samples no chunk contained, with the deleted samples'
  classes in four times their numbers (what "forgotten" should look like);
* **trained on, not kept**: chunk samples the memory did not keep, class-matched alike;
* **still in memory**: the memory's remaining rows.

under these conditions: *before* deletion; *deleted* (the memory rows gone, the weights as they
were: by construction the same model); *refit E* (``retentive memory refit``, E epochs on the
remaining memory, for each E of ``--refit-epochs``); *rerun* (the last update run again from the
version before it, without the deleted samples in its memory or its chunk); and *retrain*
(the whole pipeline run again without the deleted samples: exact unlearning, the reference).

The summary is the gap between the deleted and the never-seen samples: their mean loss
difference (negative: the model still fits the deleted samples better than data it never saw) and
a loss-threshold membership test's AUC (the chance that a deleted sample has a lower loss than a
never-seen one of its class mix; 0.5: indistinguishable). One torch thread.

    PYTHONPATH=. python benchmarks/deletion_influence.py [--seeds 0 1 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from quiet_cpu import QUIET_CPU
from torch import Tensor

from retentive import ExperienceReplayModelUpdater
from retentive.data import TensorChunk, load_mnist
from retentive.governance import delete_samples, read_memory
from retentive.models import MLP
from retentive.state import load_state

RESULTS = Path(__file__).resolve().parent / "results" / "deletion_influence.json"
CLASSES_PER_CHUNK = 2
SETS = ("deleted", "never_seen", "trained_not_kept", "memory")


def row_keys(inputs: Tensor) -> list[str]:
    """A key per sample (sha256 of its bytes): finds a memory row's sample in the chunks."""
    flat = inputs.reshape(len(inputs), -1).contiguous().numpy()
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in flat]


def scenario(per_class: int, heldout_per_class: int, seed: int) -> tuple[list[TensorChunk], TensorChunk]:
    """Split-MNIST's five chunks of ``per_class`` samples a class, and a never-seen pool beside them."""
    train = load_mnist("train")
    g = torch.Generator().manual_seed(seed)
    chunks, pool = [], []
    for first in range(0, 10, CLASSES_PER_CHUNK):
        parts = []
        for label in range(first, first + CLASSES_PER_CHUNK):
            where = torch.nonzero(train.targets == label).flatten()
            where = where[torch.randperm(len(where), generator=g)]
            parts.append(where[:per_class])
            pool.append(where[per_class : per_class + heldout_per_class])
        chunks.append(train.subset(torch.cat(parts)))
    return chunks, train.subset(torch.cat(pool))


def er(settings: dict[str, Any], input_state: Path | None, output: Path) -> ExperienceReplayModelUpdater:
    torch.manual_seed(settings["seed"])  # the same initial weights for every pipeline of a seed
    return ExperienceReplayModelUpdater(
        MLP(),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=settings["lr"]),
        memory_size=settings["memory"],
        batch_size=settings["batch_size"],
        max_epochs=settings["epochs"],
        seed=settings["seed"],
        input_state_folder=input_state,
        output_state_folder=output,
        **QUIET_CPU,
    )


def pipeline(settings: dict[str, Any], chunks: list[TensorChunk], root: Path) -> list[Path]:
    """One update per chunk, each from the state folder the one before wrote."""
    folders: list[Path] = []
    for task, chunk in enumerate(chunks):
        folder = root / f"update_{task}"
        er(settings, folders[-1] if folders else None, folder).update(chunk, task_id=task)
        folders.append(folder)
    return folders


def per_sample(folder: Path, data: TensorChunk) -> tuple[Tensor, Tensor]:
    """The saved model's cross-entropy and correctness on every sample of ``data``."""
    model = MLP()
    model.load_state_dict(load_state(folder).model)
    model.eval()
    with torch.no_grad():
        logits = model(data.inputs)
    loss = torch.nn.functional.cross_entropy(logits, data.targets, reduction="none")
    return loss, (logits.argmax(1) == data.targets).float()


def membership_auc(member: Tensor, outsider: Tensor) -> float:
    """P(loss of a member < loss of an outsider) + P(equal) / 2: a loss-threshold attack's AUC."""
    lower = (member[:, None] < outsider[None, :]).float().mean()
    equal = (member[:, None] == outsider[None, :]).float().mean()
    return float(lower + equal / 2)


def measure(folder: Path, sets: dict[str, TensorChunk]) -> dict[str, Any]:
    losses = {name: per_sample(folder, data) for name, data in sets.items()}
    out: dict[str, Any] = {
        name: {"loss": float(loss.mean()), "accuracy": float(correct.mean())}
        for name, (loss, correct) in losses.items()
    }
    out["gap"] = out["deleted"]["loss"] - out["never_seen"]["loss"]
    out["auc"] = membership_auc(losses["deleted"][0], losses["never_seen"][0])
    return out


def class_matched(pool: TensorChunk, like: Tensor, times: int, g: torch.Generator) -> TensorChunk:
    """``times`` samples of ``pool`` per sample of ``like``, of the same class."""
    picks = []
    for label, count in zip(*torch.unique(like, return_counts=True)):
        where = torch.nonzero(pool.targets == label).flatten()
        picks.append(where[torch.randperm(len(where), generator=g)[: times * int(count)]])
    return pool.subset(torch.cat(picks))


def without(chunk: TensorChunk, keys: set[str]) -> TensorChunk:
    """``chunk`` less the samples whose keys are in ``keys``."""
    keep = [i for i, key in enumerate(row_keys(chunk.inputs)) if key not in keys]
    return chunk.subset(torch.tensor(keep, dtype=torch.long))


def memory_rows(folder: Path) -> tuple[TensorChunk, list[str], list[int]]:
    """The samples a state's memory holds, their keys, and their sample ids (``retentive memory list``)."""
    memory = read_memory(str(folder)).memory
    rows = TensorChunk(memory.decoded("inputs").cpu(), memory.decoded("targets").cpu().long())
    return rows, row_keys(rows.inputs), [int(i) for i in memory.sample_ids()]


def delete_rows(state: Path, output: Path, keys: set[str]) -> None:
    """``state`` less the memory rows whose keys are given, written to ``output`` through the
    governance API (``retentive memory delete --ids``); a copy when it holds none of them."""
    _, held, ids = memory_rows(state)
    chosen = [sample_id for key, sample_id in zip(held, ids) if key in keys]
    if chosen:
        delete_samples(str(state), ids=chosen, output=str(output))
    else:
        shutil.copytree(state, output)


def run_seed(settings: dict[str, Any], seed: int, root: Path) -> dict:
    """Every condition for one seed (state folders under ``root``)."""
    settings = {**settings, "seed": seed}
    chunks, pool = scenario(settings["per_class"], settings["heldout_per_class"], seed)
    start = time.perf_counter()
    folders = pipeline(settings, chunks, root / "pipeline")
    rows, keys, _ = memory_rows(folders[-1])
    g = torch.Generator().manual_seed(10_000 + seed)
    chosen = torch.randperm(len(rows), generator=g)[: settings["delete"]]
    deleted_keys = {keys[int(i)] for i in chosen}
    kept = torch.tensor([i for i, key in enumerate(keys) if key not in deleted_keys], dtype=torch.long)
    deleted = rows.subset(chosen)
    memory_keys = set(keys)
    trained = [without(chunk, memory_keys) for chunk in chunks]
    trained_all = TensorChunk(torch.cat([c.inputs for c in trained]), torch.cat([c.targets for c in trained]))
    sets = {
        "deleted": deleted,
        "never_seen": class_matched(pool, deleted.targets, 4, g),
        "trained_not_kept": class_matched(trained_all, deleted.targets, 4, g),
        "memory": rows.subset(kept),
    }
    last_chunk_keys = set(row_keys(chunks[-1].inputs))
    out: dict[str, Any] = {
        "seed": seed,
        "deleted_from_last_chunk": sum(key in last_chunk_keys for key in deleted_keys),
        "set_sizes": {name: len(data) for name, data in sets.items()},
        "pipeline_seconds": round(time.perf_counter() - start, 2),
        "conditions": {"before": measure(folders[-1], sets)},
    }
    deleted_state = root / "deleted"
    delete_rows(folders[-1], deleted_state, deleted_keys)
    out["conditions"]["deleted"] = measure(deleted_state, sets)
    for epochs in settings["refit_epochs"]:
        folder, begin = root / f"refit_{epochs}", time.perf_counter()
        er(settings, deleted_state, folder).refit(epochs)
        out["conditions"][f"refit_{epochs}"] = measure(folder, sets)
        out[f"refit_{epochs}_seconds"] = round(time.perf_counter() - begin, 2)
    parent = root / "rerun_parent"
    delete_rows(folders[-2], parent, deleted_keys)  # those of the deleted samples it held, if any
    begin = time.perf_counter()
    er(settings, parent, root / "rerun").update(without(chunks[-1], deleted_keys), task_id=len(chunks) - 1)
    out["conditions"]["rerun"] = measure(root / "rerun", sets)
    out["rerun_seconds"] = round(time.perf_counter() - begin, 2)
    begin = time.perf_counter()
    retrained = pipeline(settings, [without(chunk, deleted_keys) for chunk in chunks], root / "retrain")
    out["conditions"]["retrain"] = measure(retrained[-1], sets)
    out["retrain_seconds"] = round(time.perf_counter() - begin, 2)
    return out


def summarize(runs: list[dict]) -> dict[str, Any]:
    """Per condition: mean and sd over seeds of each set's loss and accuracy, the gap and the AUC."""

    def stats(values: list[float]) -> dict[str, float]:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return {
            "mean": round(statistics.fmean(values), 4),
            "sd": round(sd, 4),
            "median": round(statistics.median(values), 4),
        }

    summary: dict[str, Any] = {}
    for condition in runs[0]["conditions"]:
        found = [run["conditions"][condition] for run in runs]
        entry: dict[str, Any] = {"gap": stats([c["gap"] for c in found]), "auc": stats([c["auc"] for c in found])}
        for name in SETS:
            entry[name] = {
                "loss": stats([c[name]["loss"] for c in found]),
                "accuracy": stats([c[name]["accuracy"] for c in found]),
            }
        summary[condition] = entry
    return summary


def table(summary: dict[str, Any]) -> str:
    """The summary as the Markdown table of docs/benchmarks/deletion.md (mean ± sd over seeds)."""

    def cell(entry: dict[str, float], digits: int = 3) -> str:
        return f"{entry['mean']:.{digits}f} ± {entry['sd']:.{digits}f}"

    lines = [
        "| condition | loss: deleted | never seen | trained on, not kept | still in memory "
        "| gap (deleted - never seen) | membership AUC | accuracy: deleted | never seen |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for condition, entry in summary.items():
        losses = " | ".join(cell(entry[name]["loss"]) for name in SETS)
        accuracy = f"{cell(entry['deleted']['accuracy'], 2)} | {cell(entry['never_seen']['accuracy'], 2)}"
        lines.append(f"| {condition} | {losses} | {cell(entry['gap'])} | {cell(entry['auc'])} | {accuracy} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--per-class", type=int, default=500, help="training samples per class in the chunks")
    parser.add_argument("--heldout-per-class", type=int, default=500, help="never-seen pool per class")
    parser.add_argument("--memory", type=int, default=500)
    parser.add_argument("--delete", type=int, default=100, help="memory samples deleted")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each update")
    parser.add_argument("--refit-epochs", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = {
        "per_class": args.per_class,
        "heldout_per_class": args.heldout_per_class,
        "memory": args.memory,
        "delete": args.delete,
        "epochs": args.epochs,
        "refit_epochs": args.refit_epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
    }
    runs, start = [], time.perf_counter()
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="deletion-influence-") as tmp:
            runs.append(run_seed(settings, seed, Path(tmp)))
        print(
            f"seed {seed}: {json.dumps({k: round(v['gap'], 3) for k, v in runs[-1]['conditions'].items()})}", flush=True
        )
    result = {
        "settings": settings,
        "seeds": args.seeds,
        "command": "PYTHONPATH=. python benchmarks/deletion_influence.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "seconds": round(time.perf_counter() - start, 1),
        "load_average": os.getloadavg(),
        "summary": summarize(runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(table(result["summary"]))
    print(f"wrote {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
