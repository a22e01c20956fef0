"""Shift detection on MNIST: calibration, power per rotation angle and on class-incremental chunks, speed.

Models: DER++ with the settings of configs/der.yaml (MLP 784-100-100-10, memory 500, 32 new + 32
memory samples a step, SGD lr 0.1, one epoch), trained through a real state folder on (a) the first
--train unrotated MNIST training images (the Rotated-MNIST figures) and (b) digits 0-1 (the
class-incremental figures). Features are the penultimate layer (the input of the classifier) of
that model; the label tests use true labels or its predicted classes. Queries are drawn from the
MNIST *test* split (unseen by the model), --query samples each; the reference is --reference
held-out test samples (disjoint from the query) or the state folder's replay memory (500 samples
the model trained on). Each trial draws new samples (seeded); a rate is the fraction of trials
with p < 0.05, with a Wilson 95% interval. Features are computed once per angle and subsampled.

    python benchmarks/shift.py [--trials 200] [--power-trials 50] [--out benchmarks/results/shift.json]
    python benchmarks/shift.py --synthetic 2000 --out benchmarks/results/shift_synthetic.json
    python benchmarks/shift.py --calibration-seeds 2 3 --out benchmarks/results/shift_calibration.json
    python benchmarks/shift.py --report benchmarks/results/shift.json

A second power sweep uses --small (100) held-out reference and query samples per trial, where the
rotation tests are not all saturated.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from quiet_cpu import QUIET_CPU

from retentive import DarkExperienceReplayModelUpdater, detect_shift, load_model
from retentive.data import TensorChunk, load_mnist
from retentive.data.rotations import rotate
from retentive.models import MLP
from retentive.quiet import quiet_lightning
from retentive.shift import build_detector, memory_reference
from retentive.shift.features import LayerFeatures, Predictions, extract

ANGLES = (0, 15, 30, 45, 90)
TESTS = ("mmd", "ks", "labels", "predicted-labels")


def train_state(train: TensorChunk, folder: Path) -> torch.nn.Module:
    """DER++ as configs/der.yaml, one update, written to ``folder``; the model with its weights."""
    torch.manual_seed(0)
    updater = DarkExperienceReplayModelUpdater(
        MLP(),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        memory_size=500,
        batch_size=64,
        batch_memory_frac=0.5,
        alpha=0.5,
        beta=0.5,
        output_state_folder=folder,
        seed=0,
        max_epochs=1,
        **QUIET_CPU,
    )
    with quiet_lightning():
        updater.update(train)
    return load_model(MLP(), folder)


def views(model: torch.nn.Module, data: TensorChunk) -> dict[str, torch.Tensor]:
    """What each test compares, per sample: penultimate features, true and predicted labels."""
    features, labels = extract(LayerFeatures(model), data, batch_size=1000)
    predicted, _ = extract(Predictions(model), data, batch_size=1000)
    return {"features": features, "labels": labels, "predicted": predicted}


def run_test(
    test: str, reference: dict[str, torch.Tensor], query: dict[str, torch.Tensor], seed: int, permutations: int
) -> float:
    """The p-value of one test on precomputed views (the detectors on features, no extractor)."""
    if test in ("mmd", "ks"):
        options = {"num_permutations": permutations} if test == "mmd" else {}
        detector = build_detector(test, seed=seed, batch_size=4096, **options)
        detector.fit(TensorChunk(reference["features"], reference["labels"]))
        return detector.test(TensorChunk(query["features"], query["labels"])).p_value
    # the label test reads a dataset's targets: the true labels, or the precomputed predicted classes
    key = "labels" if test == "labels" else "predicted"
    detector = build_detector("labels", seed=seed, batch_size=4096, num_classes=10)
    detector.fit(TensorChunk(reference["features"], reference[key]))
    return detector.test(TensorChunk(query["features"], query[key])).p_value


def pick(view: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value[index] for key, value in view.items()}


def wilson(hits: int, n: int) -> list[float]:
    """The Wilson score 95% interval of a rate."""
    z, p = 1.959964, hits / n
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n),
    )
    return [round(centre - half, 4), round(centre + half, 4)]


def rates(p_values: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    out = {}
    for test, values in p_values.items():
        hits = sum(p < 0.05 for p in values)
        out[test] = {
            "rate": hits / len(values),
            "trials": len(values),
            "ci95": wilson(hits, len(values)),
            "median_p": statistics.median(values),
        }
    return out


def trials(
    reference_pool: dict[str, torch.Tensor] | None,
    memory: dict[str, torch.Tensor] | None,
    query_pool: dict[str, torch.Tensor],
    n_trials: int,
    args: argparse.Namespace,
    seed: int,
    same_pool: bool = False,
) -> dict[str, dict[str, Any]]:
    """p < 0.05 rates over ``n_trials`` draws; reference: held-out draws from ``reference_pool`` or ``memory``."""
    generator = torch.Generator().manual_seed(seed)
    p_values: dict[str, list[float]] = {test: [] for test in TESTS}
    n_query = len(query_pool["labels"])
    for trial in range(n_trials):
        order = torch.randperm(n_query, generator=generator)
        query = pick(query_pool, order[: args.query])
        if memory is not None:
            reference = memory
        else:  # held-out: disjoint from the query when both come from the same images
            pool_order = order if same_pool else torch.randperm(len(reference_pool["labels"]), generator=generator)
            start = args.query if same_pool else 0
            reference = pick(reference_pool, pool_order[start : start + args.reference])
        for test in TESTS:
            p_values[test].append(run_test(test, reference, query, seed * 1000 + trial, args.permutations))
    return rates(p_values)


def rotated_mnist(args: argparse.Namespace, train: TensorChunk, test: TensorChunk, root: Path) -> dict[str, Any]:
    model = train_state(train.subset(torch.arange(args.train)), root / "rotated")
    memory = views(model, memory_reference(root / "rotated"))
    unrotated = views(model, test)
    results: dict[str, Any] = {"calibration": trials(unrotated, None, unrotated, args.trials, args, 1, same_pool=True)}
    results["calibration_memory_reference"] = trials(None, memory, unrotated, args.power_trials, args, 2)
    power: dict[str, Any] = {}
    for angle in ANGLES:
        rotated = views(model, TensorChunk(rotate(test.inputs, float(angle)), test.targets))
        power[str(angle)] = {
            "held_out_reference": trials(
                unrotated, None, rotated, args.power_trials, args, 10 + angle, same_pool=angle == 0
            ),
            "memory_reference": trials(None, memory, rotated, args.power_trials, args, 20 + angle),
        }
        print(
            f"rotated {angle}: " + json.dumps({k: {t: v[t]["rate"] for t in v} for k, v in power[str(angle)].items()}),
            flush=True,
        )
    results["power"] = power
    small = argparse.Namespace(**{**vars(args), "reference": args.small, "query": args.small})
    results["power_small_chunks"] = {
        str(angle): trials(
            unrotated,
            None,
            views(model, TensorChunk(rotate(test.inputs, float(angle)), test.targets)),
            args.power_trials,
            small,
            50 + angle,
            same_pool=angle == 0,
        )
        for angle in ANGLES
    }
    print(
        "small chunks: "
        + json.dumps({a: {t: v[t]["rate"] for t in v} for a, v in results["power_small_chunks"].items()}),
        flush=True,
    )
    return results


def calibration_repeats(args: argparse.Namespace, train: TensorChunk, test: TensorChunk, root: Path) -> dict[str, Any]:
    """The held-out calibration of the Rotated-MNIST model again, with other seeds (new draws)."""
    model = train_state(train.subset(torch.arange(args.train)), root / "rotated")
    unrotated = views(model, test)
    out = {}
    for seed in args.calibration_seeds:
        out[str(seed)] = trials(unrotated, None, unrotated, args.trials, args, seed, same_pool=True)
        print(f"calibration seed {seed}: " + json.dumps({t: v["rate"] for t, v in out[str(seed)].items()}), flush=True)
    return out


def class_incremental(args: argparse.Namespace, train: TensorChunk, test: TensorChunk, root: Path) -> dict[str, Any]:
    classes = lambda data, digits: data.subset(torch.nonzero(torch.isin(data.targets, torch.tensor(digits))).flatten())  # noqa: E731
    model = train_state(classes(train, [0, 1]), root / "class_il")
    memory = views(model, memory_reference(root / "class_il"))
    old, new = views(model, classes(test, [0, 1])), views(model, classes(test, [2, 3]))
    generator = torch.Generator().manual_seed(5)
    n_new = args.query // 10  # 90% old digits, 10% new
    mixed = {
        k: torch.cat(
            [
                old[k][torch.randperm(len(old["labels"]), generator=generator)[: 5 * args.query]],
                new[k][torch.randperm(len(new["labels"]), generator=generator)[: 5 * n_new]],
            ]
        )
        for k in old
    }
    out: dict[str, Any] = {}
    for name, pool in (("same classes 0-1", old), ("new classes 2-3", new), ("90% 0-1 + 10% 2-3", mixed)):
        out[name] = {
            "held_out_reference": trials(old, None, pool, args.power_trials, args, 30, same_pool=pool is old),
            "memory_reference": trials(None, memory, pool, args.power_trials, args, 40),
        }
        print(
            f"class-IL {name}: " + json.dumps({k: {t: v[t]["rate"] for t in v} for k, v in out[name].items()}),
            flush=True,
        )
    return out


def speed(args: argparse.Namespace, test: TensorChunk, root: Path) -> dict[str, Any]:
    """Wall time of detect_shift (feature extraction included) for a 10,000-sample chunk vs the 500-sample memory."""
    model = load_model(MLP(), root / "rotated")
    chunk = TensorChunk(rotate(test.inputs, 30.0), test.targets)
    settings = {
        "mmd (max_samples 2000, 1000 permutations)": dict(detector="mmd", model=model),
        "mmd (all 10,500 samples, 100 permutations)": dict(
            detector="mmd", model=model, max_samples=None, num_permutations=100
        ),
        "ks (all samples)": dict(detector="ks", model=model),
        "labels": dict(detector="labels"),
        "predicted labels": dict(detector="labels", model=model, predicted=True),
    }
    out = {}
    for name, options in settings.items():
        times = []
        for _ in range(args.speed_repeats):
            start = time.perf_counter()
            result = detect_shift(chunk, state_folder=root / "rotated", batch_size=1000, **options)
            times.append(time.perf_counter() - start)
        out[name] = {
            "median_s": round(statistics.median(times), 3),
            "runs_s": [round(t, 3) for t in times],
            "p_value": result.p_value,
            "n_reference": result.n_reference,
            "n_query": result.n_query,
        }
        print(f"speed {name}: {out[name]}", flush=True)
    return out


def synthetic_calibration(n_trials: int) -> dict[str, Any]:
    """The tests' level on data where the null holds exactly: Gaussian features (50 vs 100 samples, 5
    dimensions, 200 permutations) and class labels drawn from one set of proportions (100 vs 200)."""
    generator = torch.Generator().manual_seed(123)
    p_values: dict[str, list[float]] = {"mmd": [], "ks": [], "labels": []}
    proportions = torch.tensor([0.4, 0.3, 0.2, 0.1])
    for trial in range(n_trials):
        x, y = torch.randn(50, 5, generator=generator), torch.randn(100, 5, generator=generator)
        for test in ("mmd", "ks"):
            options = {"num_permutations": 200} if test == "mmd" else {}
            detector = build_detector(test, seed=trial, **options)
            detector.fit(TensorChunk(x, torch.zeros(50, dtype=torch.long)))
            p_values[test].append(detector.test(TensorChunk(y, torch.zeros(100, dtype=torch.long))).p_value)
        a = torch.multinomial(proportions, 100, replacement=True, generator=generator)
        b = torch.multinomial(proportions, 200, replacement=True, generator=generator)
        detector = build_detector("labels", num_classes=4)
        detector.fit(TensorChunk(torch.zeros(100, 1), a))
        p_values["labels"].append(detector.test(TensorChunk(torch.zeros(200, 1), b)).p_value)
    return rates(p_values)


def _cells(row: dict[str, Any]) -> str:
    return " | ".join(f"{100 * row[t]['rate']:.1f}" for t in TESTS)


def report(path: Path) -> None:
    """The docs/benchmarks/shift.md tables of a results file: rates in % of trials with p < 0.05."""
    results = json.loads(path.read_text())
    head = "| " + " | ".join(["{}"] + list(TESTS)) + " |\n|" + "---|" * (len(TESTS) + 1)
    rot = results["rotated_mnist"]
    print(head.format("null (same distribution)"))
    for name, key in (
        ("two disjoint held-out chunks, 200 trials", "calibration"),
        ("memory vs a held-out chunk", "calibration_memory_reference"),
    ):
        print(f"| {name} | {_cells(rot[key])} |")
    print("\n" + head.format("rotation (1000-sample chunk)"))
    for angle, cell in rot["power"].items():
        for reference, row in cell.items():
            print(f"| {angle}°, {reference.replace('_', ' ')} | {_cells(row)} |")
    print("\n" + head.format(f"rotation ({results['settings']['small']} vs {results['settings']['small']})"))
    for angle, row in rot["power_small_chunks"].items():
        print(f"| {angle}° | {_cells(row)} |")
    print("\n" + head.format("class-incremental (model on 0-1)"))
    for name, cell in results["class_incremental"].items():
        for reference, row in cell.items():
            print(f"| {name}, {reference.replace('_', ' ')} | {_cells(row)} |")
    print("\n| detector (10,000-sample chunk vs 500-sample memory) | median s | runs | p-value |\n|---|---|---|---|")
    for name, row in results["speed"].items():
        print(f"| {name} | {row['median_s']} | {row['runs_s']} | {row['p_value']:.3g} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="calibration trials [200]")
    parser.add_argument("--power-trials", type=int, default=50, help="trials per power cell [50]")
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--reference", type=int, default=500, help="held-out reference samples [500, as the memory]")
    parser.add_argument("--query", type=int, default=1000, help="query chunk samples [1000]")
    parser.add_argument(
        "--small", type=int, default=100, help="reference and query size of the small-chunk power sweep [100]"
    )
    parser.add_argument("--train", type=int, default=10000, help="training images of the Rotated-MNIST model")
    parser.add_argument("--speed-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/shift.json"))
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="T",
        help="only the synthetic calibration, T trials (written to --out)",
    )
    parser.add_argument(
        "--calibration-seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="only the held-out calibration, once per seed (the main run uses seed 1)",
    )
    parser.add_argument("--report", type=Path, default=None, metavar="JSON", help="print the tables of a results file")
    args = parser.parse_args()
    if args.report is not None:
        return report(args.report)
    torch.set_num_threads(1)
    if args.synthetic:
        started = time.perf_counter()
        result = {
            "settings": vars(args) | {"out": str(args.out)},
            "synthetic_calibration": synthetic_calibration(args.synthetic),
        }
        result["seconds"] = round(time.perf_counter() - started, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result["synthetic_calibration"]))
        return
    train, test = load_mnist("train"), load_mnist("test")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if args.calibration_seeds:
            results = {
                "settings": vars(args) | {"out": str(args.out)},
                "calibration_by_seed": calibration_repeats(args, train, test, root),
            }
        else:
            results = {
                "settings": vars(args) | {"out": str(args.out)},
                "rotated_mnist": rotated_mnist(args, train, test, root),
                "class_incremental": class_incremental(args, train, test, root),
                "speed": speed(args, test, root),
            }
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {args.out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
