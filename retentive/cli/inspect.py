"""``retentive inspect STATE``: the manifest, file sizes, memory class histogram and verification result.

Exit code 0 when the folder verifies (it would load), 1 when it does not; the report is printed
either way, so a damaged folder shows which file is at fault.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from retentive.cli.locations import is_local, state_location

if TYPE_CHECKING:
    from retentive.state.inspection import StateReport


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("state", type=state_location, metavar="STATE", help="the state folder (or its URL) to inspect")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from retentive.state.inspection import format_report, inspect_state

    report = inspect_state(args.state) if is_local(args.state) else _inspect_url(args.state)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        print(format_report(report))
    return 0 if report.verified else 1


def _inspect_url(url: str) -> StateReport:
    """Fetch the committed state (verifying every checksum, or failing naming the file), then inspect it."""
    import tempfile
    from pathlib import Path

    from retentive.state.inspection import inspect_state
    from retentive.state.remote import fetch_state

    with tempfile.TemporaryDirectory(prefix="retentive-inspect-") as scratch:
        report = inspect_state(fetch_state(url, Path(scratch) / "state"))
        report.leftovers = []  # the temporary folder's surroundings say nothing about the URL
    report.path = url
    return report
