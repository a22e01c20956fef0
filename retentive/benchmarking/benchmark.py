"""The benchmark: methods x scenarios x seeds (x chunk orders), run like a pipeline, reported.

Output folder layout::

    results.json   settings, every run (accuracy matrices, per-update cost) and the summary;
                   rewritten after every run, so an interrupted benchmark keeps what it finished
    runs.csv       one line per run and evaluation view
    summary.csv    mean and std over seeds per scenario, view, method and order
    heatmaps/      SCENARIO_VIEW[_ORDER].png: the mean accuracy matrix of each method side by side
    tensorboard/   SCENARIO/METHOD/ORDER/seed_S/{training,evaluation}
    states/        SCENARIO/METHOD/ORDER/seed_S/chunk_NNN: the state folders the updates wrote
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from retentive._version import __version__
from retentive.benchmarking.heatmap import CAPTION, write_heatmap
from retentive.benchmarking.methods import PROTOCOLS, BenchmarkMethod
from retentive.benchmarking.orders import ORDERS, chunk_difficulty, task_order
from retentive.benchmarking.progress import Progress
from retentive.benchmarking.report import (
    SummaryRow,
    format_table,
    summarize_runs,
    write_json,
    write_runs_csv,
    write_summary_csv,
)
from retentive.benchmarking.results import RunResult
from retentive.benchmarking.runner import run_scenario
from retentive.benchmarking.scenarios import SCENARIOS, Scenario, ScenarioOptions, build_scenario, scenario_data
from retentive.benchmarking.tensorboard import write_run
from retentive.data.tensors import TensorChunk


@dataclass
class BenchmarkReport:
    """The runs, their summary over seeds, and where the files went."""

    runs: list[RunResult]
    summary: list[SummaryRow]
    settings: dict[str, Any]
    output: Path

    def table(self, markdown: bool = False) -> str:
        return format_table(self.summary, markdown=markdown)


def resolve_method(
    method: str | BenchmarkMethod, protocol: str, custom: Mapping[str, BenchmarkMethod]
) -> BenchmarkMethod:
    """A spec as given, a name from ``custom`` (e.g. a YAML file), or a name in the scenario's protocol."""
    if isinstance(method, BenchmarkMethod):
        return method
    if method in custom:
        return custom[method]
    available = PROTOCOLS.get(protocol, {})
    if method in available:
        return available[method]
    raise ValueError(
        f"unknown method {method!r} for protocol {protocol!r}; expected one of "
        f"{sorted(set(available) | set(custom))} or a methods file defining it"
    )


def _heatmap_name(scenario: str, view: str, order: str) -> str:
    return f"{scenario}_{view}" + ("" if order == "given" else f"_{order}") + ".png"


def run_benchmark(
    scenarios: Sequence[str],
    methods: Sequence[str | BenchmarkMethod],
    seeds: Sequence[int] = (0,),
    output: str | os.PathLike[str] = "benchmark_output",
    orders: Sequence[str] = ("given",),
    options: ScenarioOptions | None = None,
    custom_methods: Mapping[str, BenchmarkMethod] | None = None,
    tensorboard: bool = True,
    keep_states: str = "last",
    progress: bool | Progress = True,
    data: tuple[TensorChunk, TensorChunk] | None = None,
) -> BenchmarkReport:
    """Run every method on every scenario for every seed and chunk order; write the results.

    ``methods`` are specs, or names looked up in ``custom_methods`` and then in the scenario's
    DER-protocol method set. ``orders`` are from :data:`retentive.benchmarking.orders.ORDERS`.
    """
    _check_choices(scenarios, methods, seeds, orders)
    options = options or ScenarioOptions()
    custom = dict(custom_methods or {})
    out = Path(output)
    if (out / "results.json").exists():
        raise FileExistsError(f"{str(out)!r} already holds benchmark results; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    pairs = {name: data for name in scenarios} if data is not None else scenario_data(scenarios, options.data_root)

    first = {name: build_scenario(name, seeds[0], options, pairs[name]) for name in scenarios}
    plan = {name: [resolve_method(m, first[name].protocol, custom) for m in methods] for name in scenarios}
    total = sum(first[n].num_chunks * len(plan[n]) for n in scenarios) * len(seeds) * len(orders)
    display = progress if isinstance(progress, Progress) else Progress(total, enabled=bool(progress))
    settings = _settings(scenarios, plan, seeds, orders, options, keep_states)
    del first
    runs: list[RunResult] = []
    for name in scenarios:
        for seed in seeds:
            scenario = build_scenario(name, seed, options, pairs[name])
            for order, arranged in _arrangements(scenario, seed, orders, display):
                for spec in plan[name]:
                    run_dir = Path(name) / spec.name / order / f"seed_{seed}"
                    tb_dir = out / "tensorboard" / run_dir if tensorboard else None
                    run = run_scenario(spec, arranged, seed, out / "states" / run_dir, tb_dir, keep_states, display)
                    if tb_dir is not None:
                        write_run(tb_dir, run)
                    runs.append(run)
                    write_json(out / "results.json", runs, summarize_runs(runs), settings)
    return _finish(out, runs, settings)


def _check_choices(
    scenarios: Sequence[str], methods: Sequence[object], seeds: Sequence[int], orders: Sequence[str]
) -> None:
    if not scenarios or not methods or not seeds or not orders:
        raise ValueError("a benchmark needs at least one scenario, method, seed and order")
    for order in orders:
        if order not in ORDERS:
            raise ValueError(f"unknown task order {order!r}; expected one of {ORDERS}")
    for name in scenarios:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; expected one of {sorted(SCENARIOS)}")


def _settings(
    scenarios: Sequence[str],
    plan: Mapping[str, Sequence[BenchmarkMethod]],
    seeds: Sequence[int],
    orders: Sequence[str],
    options: ScenarioOptions,
    keep_states: str,
) -> dict[str, Any]:
    """What ran, and where: saved with the results so a number can be traced to its setup."""
    return {
        "scenarios": list(scenarios),
        "methods": {n: {spec.name: spec.to_dict() for spec in plan[n]} for n in scenarios},
        "seeds": [int(s) for s in seeds],
        "orders": list(orders),
        "options": {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in asdict(options).items()},
        "keep_states": keep_states,
        "retentive": __version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()}",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _arrangements(
    scenario: Scenario, seed: int, orders: Sequence[str], display: Progress
) -> Iterator[tuple[str, Scenario]]:
    """The scenario in each chunk order; difficulty orders probe every chunk's error once per seed."""
    difficulty = None
    if any(o in ("easy-hard", "hard-easy") for o in orders):
        difficulty = chunk_difficulty(scenario, seed)
        display.note(
            f"{scenario.name} seed {seed}: probe error per chunk (%) " + " ".join(f"{100 * d:.1f}" for d in difficulty)
        )
    for order in orders:
        if order == "given":
            yield order, scenario
        else:
            yield order, scenario.reordered(task_order(order, difficulty, scenario.num_chunks, seed), order)


def _finish(out: Path, runs: list[RunResult], settings: dict[str, Any]) -> BenchmarkReport:
    """Write the final results, tables and heatmaps."""
    summary = summarize_runs(runs)
    settings["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json(out / "results.json", runs, summary, settings)
    write_runs_csv(out / "runs.csv", runs)
    write_summary_csv(out / "summary.csv", summary)
    write_heatmaps(out / "heatmaps", summary)
    return BenchmarkReport(runs, summary, settings, out)


def write_heatmaps(folder: str | os.PathLike[str], summary: Sequence[SummaryRow]) -> list[Path]:
    """One PNG per scenario, view and order: each method's mean matrix side by side."""
    groups: dict[tuple[str, str, str], dict[str, list[list[float]]]] = {}
    for row in summary:
        groups.setdefault((row.scenario, row.view, row.order), {})[row.method] = row.mean_matrix
    return [
        write_heatmap(
            Path(folder) / _heatmap_name(scenario, view, order),
            {method: torch.tensor(m) for method, m in matrices.items()},
            caption=f"{scenario} {view}" + ("" if order == "given" else f" {order}") + ": " + CAPTION,
        )
        for (scenario, view, order), matrices in groups.items()
    ]
