"""The ``retentive`` command: one subcommand per module in ``retentive/commands``.

Each command module defines ``configure(parser)`` and ``run(args) -> exit code``. Exit codes: 0 success,
1 a retentive error (bad state, bad data), 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from retentive.errors import RetentiveError

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("retentive.commands.demo", "Split-MNIST demo: one update per chunk, each in a fresh process"),
    "update": ("retentive.commands.update", "update a model on one data chunk, configured by a YAML file"),
    "inspect": ("retentive.commands.inspect", "show a state folder's manifest, files, memory classes and verification result"),
    "benchmark": ("retentive.commands.benchmark", "benchmark methods x scenarios x seeds through state folders"),
    "evaluate": ("retentive.commands.evaluate", "evaluate saved state folders on a scenario's test data"),
    "import-renate": ("retentive.commands.import_renate", "convert a Renate 0.5.2 state folder into a retentive one"),
    "rollback": ("retentive.commands.rollback", "undo the last in-place update of a state folder"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retentive", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module)
        importlib.import_module(module).configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except RetentiveError as error:
        print(f"retentive {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
