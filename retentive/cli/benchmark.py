"""``retentive benchmark``: methods x scenarios x seeds, each chunk one ``update()`` through state
folders, reported as a mean ± std table, CSV, JSON, heatmaps and TensorBoard logs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retentive.cli.arguments import add_mnist_options


def outputs(args: argparse.Namespace) -> list[Path]:
    """The folders a run may create; a failed run removes those it left empty."""
    return [args.output]


def configure(parser: argparse.ArgumentParser) -> None:
    from retentive.cli.names import KEEP_STATES, ORDERS, SCENARIOS

    parser.add_argument(
        "--scenario",
        nargs="+",
        default=["seq-mnist"],
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"scenarios to run [seq-mnist]; one of {', '.join(sorted(SCENARIOS))}",
    )
    _add_methods(parser)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="seeds [0]")
    parser.add_argument(
        "--orders",
        nargs="+",
        default=["given"],
        choices=ORDERS,
        metavar="ORDER",
        help=f"chunk orders, side by side: {', '.join(ORDERS)} [given]",
    )
    parser.add_argument(
        "--train-per-chunk",
        type=int,
        default=None,
        metavar="N",
        help="at most N training samples per chunk, for quick runs [all]",
    )
    add_mnist_options(
        parser, "number of chunks [the scenario's own: 5 or 20]", "at most N test samples per chunk [all]"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("benchmark_output"),
        help="results folder; must not hold results yet [benchmark_output]",
    )
    parser.add_argument(
        "--keep-states", default="last", choices=KEEP_STATES, help="state folders to keep per run [last]"
    )
    parser.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard logs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads [1]")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")


def _add_methods(parser: argparse.ArgumentParser) -> None:
    """Which methods run: protocol names, a methods file, or just the list of registered methods."""
    parser.add_argument(
        "--method",
        nargs="+",
        default=["fine-tuning", "er", "der++"],
        metavar="NAME",
        help="methods: names in the scenario's DER-protocol set (fine-tuning, er, der, der++) "
        "or in --methods-file [fine-tuning er der++]",
    )
    parser.add_argument(
        "--methods-file",
        type=Path,
        default=None,
        metavar="YAML",
        help="YAML mapping method names to {updater, optimizer, optimizer_args, args}, checked as "
        "`retentive update --config` checks a config, before anything runs",
    )
    parser.add_argument(
        "--list-methods",
        action="store_true",
        help="print the registered methods (name, Renate name, updater, memory, summary) and exit; "
        "any of their names may be a methods file's updater",
    )


def run(args: argparse.Namespace) -> int:
    if args.list_methods:
        from retentive.methods.registry import method_table

        print(method_table(markdown=args.markdown))
        return 0
    import torch

    from retentive.benchmarking import ScenarioOptions, load_methods, run_benchmark
    from retentive.benchmarking.scenarios import ensure_data

    torch.set_num_threads(args.threads)
    custom = load_methods(args.methods_file) if args.methods_file is not None else {}  # a ConfigError: exit 1
    ensure_data(args.scenario, args.data)  # missing data: fetched, or one line and exit 1
    try:
        report = run_benchmark(
            scenarios=args.scenario,
            methods=args.method,
            seeds=args.seeds,
            output=args.output,
            orders=args.orders,
            options=ScenarioOptions(args.tasks, args.train_per_chunk, args.test_per_chunk, args.data),
            custom_methods=custom,
            tensorboard=not args.no_tensorboard,
            keep_states=args.keep_states,
            progress=not args.quiet,
        )
    except (FileExistsError, ValueError) as error:
        from retentive.errors import RetentiveError

        if isinstance(error, RetentiveError):
            raise
        print(f"retentive benchmark: error: {error}", file=sys.stderr)  # an unknown method, a used --output
        return 2
    print()
    print(report.table(markdown=args.markdown))
    out = report.output
    print(f"\nresults: {out / 'results.json'}, {out / 'runs.csv'}, {out / 'summary.csv'}")
    print(f"heatmaps: {out / 'heatmaps'}")
    if not args.no_tensorboard:
        print(f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    return 0
