"""``retentive tune``: a hyperparameter search for one update, configured by a YAML config and a
space file; the winner by a validation metric becomes the output state.

Each trial is ``retentive update`` with the trial's ``--set`` values, from the same input state
into its own folder (the input is never modified), run as a separate local process by Syne Tune
(the ``hpo`` extra), ``--workers`` at a time.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from retentive.cli.arguments import (
    add_chunk,
    add_epilog,
    add_overrides,
    add_state_folders,
    add_threads,
    non_negative_int,
    positive_int,
)
from retentive.cli.locations import is_local

SCHEDULERS = ("random", "bo", "asha")  # retentive.training.search.SCHEDULERS, listed without importing it
EPILOG = """\
SPACE.yaml maps dotted config keys (as --set takes them) to a domain or a constant:
  optimizer.init_args.lr: {loguniform: [0.001, 0.3]}
  updater.init_args.alpha: {choice: [0.2, 0.5, 1.0]}
  updater.init_args.batch_size: 32
domains: choice [values], uniform/loguniform [lower, upper], randint/lograndint [lower, upper].

--val-data should hold data of every chunk seen so far, or the search rewards forgetting.
The winner's state, with hpo.csv (every update's search) and a "search" record in its manifest,
is renamed into --output-state at once; trial folders are removed unless --keep-trials.

exit codes: 0 the winner is written to --output-state; 1 a retentive error (bad config, space,
data or state folder; one line on stderr, nothing written); 2 bad usage.

example, one search per chunk:
  retentive tune --config configs/der.yaml --space configs/search/lr.yaml --data chunks/day2.npz \\
      --val-data val/ --input-state state/day1 --output-state state/day2 --workers 2 --max-trials 6
"""
FLAGS = {
    "output_state_url": "--output-state",
    "input_state_url": "--input-state",
    "input_state_folder": "--input-state",
}


def configure(parser: argparse.ArgumentParser) -> None:
    add_epilog(parser, EPILOG)
    parser.add_argument(
        "--config", required=True, type=Path, metavar="CONFIG", help="the YAML update config (see configs/)"
    )
    parser.add_argument("--space", required=True, type=Path, metavar="SPACE", help="the search space YAML (see below)")
    add_chunk(parser)
    parser.add_argument(
        "--val-data",
        required=True,
        type=Path,
        metavar="VAL",
        help="validation data the winner is chosen on, same format as --data",
    )
    add_state_folders(
        parser,
        input_help="the previous update's state folder or URL (s3://...)",
        output_help="where the winner's state goes (a folder or a URL); it must not hold a state yet",
    )
    _add_search(parser)
    add_overrides(parser, "fix one config value for every trial, as in retentive update (repeatable)")
    parser.add_argument("--task-id", type=non_negative_int, default=None, metavar="N", help="the chunk's task id")
    parser.add_argument("--seed", type=int, default=0, help="the scheduler's seed [0]")
    add_threads(parser, "torch threads per trial [CPU cores / --workers]")
    parser.add_argument(
        "--working-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where trials run [.retentive-tune-<name> beside --output-state]",
    )
    parser.add_argument("--keep-trials", action="store_true", help="keep every trial's folder under --working-dir")


def _add_search(parser: argparse.ArgumentParser) -> None:
    """How many trials, how they are chosen, and what they are judged by."""
    parser.add_argument("--workers", type=positive_int, default=1, metavar="N", help="trials run in parallel [1]")
    parser.add_argument("--max-trials", type=positive_int, default=None, metavar="N", help="run exactly N trials")
    parser.add_argument(
        "--max-time", type=float, default=None, metavar="S", help="start no trial after S seconds (running ones finish)"
    )
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="random", help="how trials are chosen [random]")
    parser.add_argument(
        "--metric", default="val/accuracy", help="the logged validation metric to optimise [val/accuracy]"
    )
    parser.add_argument("--mode", choices=("max", "min"), default="max", help="maximise or minimise --metric [max]")


def outputs(args: argparse.Namespace) -> list[Path]:
    return [args.output_state.parent] if is_local(args.output_state) else []


def _shown(config: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in config.items()
    )


def _progress(metric: str, mode: str, searched: list[str]) -> Any:
    def report(trial: Any, trials: list[Any]) -> None:
        value = trial.best(metric, mode)
        done = [t for t in trials if t.best(metric, mode) is not None]
        best = (max if mode == "max" else min)(done, key=lambda t: t.best(metric, mode)) if done else None
        shown = "-" if value is None else f"{value:.4f}"
        tail = "" if best is None else f" (best so far: trial {best.trial_id}, {best.best(metric, mode):.4f})"
        config = {key: trial.config.get(key) for key in searched}
        print(
            f"retentive tune: trial {trial.trial_id} {trial.status.lower()}: {_shown(config)} -> {metric} {shown}{tail}",
            flush=True,
        )

    return report


def summary_table(result: Any, searched: list[str]) -> str:
    """One row per trial, the winner marked with ``*``."""
    header = ["trial", *searched, result.metric, "status"]
    rows = []
    for trial in result.trials:
        value = trial.best(result.metric, result.mode)
        mark = "*" if trial.trial_id == result.winner.trial_id else " "
        cells = [f"{mark}{trial.trial_id}"]
        cells += [
            f"{trial.config.get(k):.4g}" if isinstance(trial.config.get(k), float) else str(trial.config.get(k))
            for k in searched
        ]
        rows.append([*cells, "-" if value is None else f"{value:.4f}", trial.status])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from retentive.training.space import is_domain, read_space
    from retentive.training.yaml_job import tune_yaml

    space = read_space(args.space)
    searched = [key for key, value in space.items() if is_domain(value)]
    result = tune_yaml(
        args.config,
        space,
        args.data,
        args.val_data,
        args.output_state,
        input_state=args.input_state,
        overrides=args.overrides,
        metric=args.metric,
        mode=args.mode,
        n_workers=args.workers,
        max_trials=args.max_trials,
        max_time=args.max_time,
        scheduler=args.scheduler,
        working_directory=args.working_dir,
        seed=args.seed,
        threads=args.threads,
        task_id=args.task_id,
        keep_trials=args.keep_trials,
        progress=_progress(args.metric, args.mode, searched),
    )
    print(summary_table(result, searched))
    value = result.winner.best(result.metric, result.mode)
    print(
        f"retentive tune: {len(result.trials)} trials in {result.seconds:.1f} s; winner trial {result.winner.trial_id} "
        f"({_shown({k: result.winner.config.get(k) for k in searched})}), {result.metric} "
        f"{'-' if value is None else f'{value:.4f}'}; state -> {args.output_state}",
        flush=True,
    )
    return 0
