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
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    from retentive.benchmarking.scenarios import SCENARIOS

    parser.add_argument("states", nargs="+", type=Path, metavar="STATE", help="state folders, in update order")
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS), metavar="NAME",
                        help=f"the test data: {', '.join(sorted(SCENARIOS))}")
    parser.add_argument("--seed", type=int, default=0,
                        help="the scenario's seed (permutations, angles) and the random init for FWT [0]")
    parser.add_argument("--tasks", type=int, default=None, help="number of chunks [the scenario's own]")
    parser.add_argument("--test-per-chunk", type=int, default=None, metavar="N", help="at most N test samples per chunk")
    parser.add_argument("--data", type=Path, default=None, help="folder with the MNIST idx files")
    parser.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                        help="a function building the model the states were trained with [the scenario's model]")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--heatmap", type=Path, default=None, help="also write the accuracy matrix to this PNG")
    parser.add_argument("--threads", type=int, default=1, help="torch threads [1]")


def _factory(spec: str):  # noqa: ANN202 - returns the user's callable
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"--model must look like 'package.module:function', got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(factory):
        raise ValueError(f"--model {spec!r} does not name a callable")
    return factory


def run(args: argparse.Namespace) -> int:
    import torch

    from retentive.benchmarking.heatmap import write_heatmap
    from retentive.benchmarking.scenarios import ScenarioOptions, build_scenario
    from retentive.evaluation import accuracy_row, flip_metrics, format_matrix, summarize
    from retentive.state.loading import load_model
    from retentive.state import read_manifest

    torch.set_num_threads(args.threads)
    try:
        options = ScenarioOptions(num_tasks=args.tasks, test_per_chunk=args.test_per_chunk, data_root=args.data)
        scenario = build_scenario(args.scenario, args.seed, options)
        factory = _factory(args.model) if args.model else scenario.model_factory
    except (ValueError, ImportError, FileNotFoundError) as error:
        print(f"retentive evaluate: error: {error}", file=sys.stderr)
        return 2
    if len(args.states) > scenario.num_chunks:
        print(f"retentive evaluate: error: {len(args.states)} state folders for a scenario of {scenario.num_chunks} chunks",
              file=sys.stderr)
        return 2
    rows: dict[str, list[torch.Tensor]] = {view: [] for view in scenario.views}
    states, flips, previous = [], [], None
    for folder in args.states:
        manifest = read_manifest(folder)  # a StateError (exit 1) names a bad folder
        model = load_model(factory(), folder)
        if previous is not None:
            flips.append({"from": str(previous[0]), "to": str(folder), **flip_metrics(model, previous[1], scenario.test)})
        previous = (folder, model)
        for view, aware in scenario.views.items():
            rows[view].append(accuracy_row(model, scenario.test, task_aware=aware))
        states.append({"state": str(folder), "updater": manifest.get("updater"),
                       "updates_done": manifest.get("updates_done"), "tasks_seen": manifest.get("tasks_seen")})
        print(f"{folder}: {manifest.get('updater')}, {manifest.get('updates_done')} updates, "
              f"tasks seen {manifest.get('tasks_seen')}")
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
        print(f"metrics over {scope}: " + "  ".join(f"{name} {100 * value:.2f}%" for name, value in metrics.items()))
    for flip in flips:
        print(f"flips {flip['from']} -> {flip['to']}: " + "  ".join(
            f"{name.upper()} {100 * flip[name]:.2f}%" for name in ("nfr", "pfr", "nfi", "pfi")))
    if args.json is not None:
        args.json.write_text(json.dumps({"scenario": scenario.name, "seed": args.seed, "states": states,
                                         "chunk_names": list(scenario.chunk_names), "views": results,
                                         "flips": flips}, indent=1))
        print(f"\nresults: {args.json}")
    if args.heatmap is not None:
        write_heatmap(args.heatmap, {view: torch.tensor(r["matrix"]) for view, r in results.items()})
        print(f"heatmap: {args.heatmap}")
    return 0
