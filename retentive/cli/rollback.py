"""``retentive rollback STATE``: put back the version the last in-place update of STATE replaced
(the logic is :func:`retentive.state.inplace.rollback`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("state", type=Path, metavar="STATE", help="a state folder updated in place")


def run(args: argparse.Namespace) -> int:
    from retentive.state.inplace import rollback

    print(f"rolled back {rollback(args.state)}")
    return 0
