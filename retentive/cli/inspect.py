"""``retentive inspect STATE``: the manifest, file sizes, memory class histogram and verification result.

Exit code 0 when the folder verifies (it would load), 1 when it does not; the report is printed
either way, so a damaged folder shows which file is at fault.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("state", type=Path, metavar="STATE", help="the state folder to inspect")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from retentive.state.inspection import format_report, inspect_state

    report = inspect_state(args.state)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        print(format_report(report))
    return 0 if report.verified else 1
