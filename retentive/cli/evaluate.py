"""``retentive evaluate STATE [STATE ...] --scenario NAME``: offline evaluation of saved state folders.

One state folder gives one row of the accuracy matrix (its accuracy on every chunk of the
scenario's test data); the state folders of a pipeline, in update order, give the matrix and the
metrics (over the chunks seen so far while updates remain). With two or more states, Renate's flip
metrics (NFR, PFR, NFI, PFI) of each state against the one before it, on all the test data.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retentive.cli.arguments import add_mnist_options

if TYPE_CHECKING:  # imported when the command runs (startup time)
    from torch import Tensor

    from retentive.benchmarking.scenarios import Scenario

#: Python argument names in library messages -> this command's terms
FLAGS = {"resume=True": "--resume (of `retentive update`)"}


def configure(parser: argparse.ArgumentParser) -> None:
    from retentive.cli.names import SCENARIOS

    parser.add_argument("states", nargs="+", type=Path, metavar="STATE", help="state folders, in update order")
    parser.add_argument(
        "--scenario",
        required=True,
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"the test data: {', '.join(sorted(SCENARIOS))}",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the scenario's seed (permutations, angles) and the random init for FWT [0]"
    )
    add_mnist_options(parser, "number of chunks [the scenario's own]", "at most N test samples per chunk")
    parser.add_argument(
        "--model",
        default=None,
        metavar="MODULE:FUNCTION",
        help="a function building the model the states were trained with, e.g. mymodels:build "
        "(imported from the current folder too) [the scenario's model]",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--heatmap", type=Path, default=None, help="also write the accuracy matrix to this PNG")
    parser.add_argument("--threads", type=int, default=1, help="torch threads [1]")


def outputs(args: argparse.Namespace) -> list[Path]:
    return [path.parent for path in (args.json, args.heatmap) if path is not None]


def _factory(spec: str) -> Callable[..., Any]:
    """The user's model factory named ``package.module:function``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"--model must look like 'package.module:function', got {spec!r}")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:  # `retentive` as a script omits the current folder
        sys.path.insert(0, str(Path.cwd()))
    factory = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(factory):
        raise ValueError(f"--model {spec!r} does not name a callable")
    return factory


def check_order(folders: list[Path], manifests: list[dict]) -> None:
    """Refuse state folders out of update order: each manifest records how many updates it has seen."""
    from retentive.errors import StateError

    counts = [manifest.get("updates_done") for manifest in manifests]
    for i in range(1, len(folders)):
        before, after = counts[i - 1], counts[i]
        if isinstance(before, int) and isinstance(after, int) and after <= before:
            raise StateError(
                f"state folders out of update order: {str(folders[i - 1])!r} is after {before} updates but the next one, "
                f"{str(folders[i])!r}, after {after}; list them in update order "
                f"({', '.join(str(f) for _, f in sorted(zip(counts, folders), key=lambda pair: str(pair[0])))})"
            )


def run(args: argparse.Namespace) -> int:
    import torch

    from retentive.benchmarking.scenarios import ScenarioOptions, build_scenario, ensure_data
    from retentive.state import read_manifest

    torch.set_num_threads(args.threads)
    ensure_data([args.scenario], args.data)
    try:
        options = ScenarioOptions(num_tasks=args.tasks, test_per_chunk=args.test_per_chunk, data_root=args.data)
        scenario = build_scenario(args.scenario, args.seed, options)
        factory = _factory(args.model) if args.model else scenario.model_factory
    except (ValueError, ImportError) as error:
        print(f"retentive evaluate: error: {error}", file=sys.stderr)
        return 2
    if len(args.states) > scenario.num_chunks:
        print(
            f"retentive evaluate: error: {len(args.states)} state folders for a scenario of {scenario.num_chunks} chunks",
            file=sys.stderr,
        )
        return 2
    manifests = [read_manifest(folder) for folder in args.states]  # a StateError (exit 1) names a bad folder
    check_order(args.states, manifests)
    rows, states, flips = _evaluate_states(args, scenario, factory, manifests)
    results = _matrices(args, scenario, factory, rows)
    for flip in flips:
        print(
            f"flips {flip['from']} -> {flip['to']}: "
            + "  ".join(f"{name.upper()} {100 * flip[name]:.2f}%" for name in ("nfr", "pfr", "nfi", "pfi"))
        )
    if args.json is not None:
        document = {
            "scenario": scenario.name,
            "seed": args.seed,
            "states": states,
            "chunk_names": list(scenario.chunk_names),
            "views": results,
            "flips": flips,
        }
        args.json.write_text(json.dumps(document, indent=1))
        print(f"\nresults: {args.json}")
    if args.heatmap is not None:
        from retentive.benchmarking.heatmap import write_heatmap

        # the panels' ACC is the one printed above: over the chunks seen, while updates remain
        matrices = {view: torch.tensor(r["matrix"]) for view, r in results.items()}
        write_heatmap(args.heatmap, matrices, seen=len(args.states))
        print(f"heatmap: {args.heatmap}")
    return 0


def _evaluate_states(
    args: argparse.Namespace, scenario: Scenario, factory: Callable[..., Any], manifests: list[dict[str, Any]]
) -> tuple[dict[str, list[Tensor]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Each state's accuracy row per view, what its manifest says, and the flips against the state before."""
    from retentive.errors import StateError
    from retentive.evaluation import accuracy_row, flip_metrics
    from retentive.state.loading import load_model

    rows: dict[str, list[Tensor]] = {view: [] for view in scenario.views}
    states, previous = [], None
    flips: list[dict[str, Any]] = []
    for folder, manifest in zip(args.states, manifests):
        try:
            model = load_model(factory(), folder)
        except StateError as error:
            if args.model is None:
                raise StateError(
                    f"{error}; pass --model MODULE:FUNCTION to build the model these states were trained with"
                ) from error
            raise
        if previous is not None:  # Renate's flip metrics against the state before
            flips.append(
                {"from": str(previous[0]), "to": str(folder), **flip_metrics(model, previous[1], scenario.test)}
            )
        previous = (folder, model)
        for view, aware in scenario.views.items():
            rows[view].append(accuracy_row(model, scenario.test, task_aware=aware))
        states.append({"state": str(folder), **{k: manifest.get(k) for k in ("updater", "updates_done", "tasks_seen")}})
        print(
            f"{folder}: {manifest.get('updater')}, {manifest.get('updates_done')} updates, "
            f"tasks seen {manifest.get('tasks_seen')}"
        )
    return rows, states, flips


def _matrices(
    args: argparse.Namespace, scenario: Scenario, factory: Callable[..., Any], rows: dict[str, list[Tensor]]
) -> dict[str, dict[str, Any]]:
    """Each view's accuracy matrix and metrics over the chunks seen (against a random init), printed."""
    import torch

    from retentive.evaluation import accuracy_row, format_matrix, summarize

    torch.manual_seed(args.seed)
    untrained = factory()
    k, counts = len(args.states), scenario.test_counts()
    results = {}
    for view, aware in scenario.views.items():
        matrix = torch.stack(rows[view])
        seen = matrix[:, :k]
        baseline = accuracy_row(untrained, [scenario.test[j] for j in range(k)], task_aware=aware)
        metrics = summarize(seen, baseline, counts[:k])
        metrics["average_accuracy_all_chunks"] = float(matrix[-1].mean())
        results[view] = {"matrix": matrix.tolist(), "random_init": baseline.tolist(), "metrics": metrics}
        scope = "all chunks" if k == scenario.num_chunks else f"the first {k} of {scenario.num_chunks} chunks"
        print(f"\n{scenario.name} {view}: accuracy (%) on each chunk's test data\n{format_matrix(matrix)}")
        print(
            f"metrics over {scope} (average_accuracy is the ACC over them): "
            + "  ".join(f"{name} {100 * value:.2f}%" for name, value in metrics.items())
        )
    return results
