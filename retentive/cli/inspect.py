"""``retentive inspect STATE``: the manifest, file sizes, memory class histogram and verification result.

STATE is a state folder, a model home (a folder or a URL: its current version is inspected) or a
URL. Exit code 0 when the state verifies (it would load), 1 when it does not; the report is
printed either way, so a damaged folder shows which file is at fault. ``--history`` lists the
versions a home keeps (current, previous, challenger with its gate report, rejected; for a single
folder, itself and its rollback copy): 0 when every one's manifest reads, else 1. ``--lineage``
prints the chain of updates back to the first: 0 when it reaches the first update with every
link readable, else 1 (the chain is printed as far as it goes).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from retentive.cli.locations import is_local, state_location

if TYPE_CHECKING:
    from retentive.state.inspection import StateReport


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "state", type=state_location, metavar="STATE", help="the state folder, model home or URL to inspect"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    view = parser.add_mutually_exclusive_group()
    view.add_argument(
        "--history", action="store_true", help="list the versions kept: current, previous, challenger, rejected"
    )
    view.add_argument("--lineage", action="store_true", help="print the chain of updates back to the first one")


def run(args: argparse.Namespace) -> int:
    if args.history or args.lineage:
        return _ancestry(args)
    from retentive.state.home import is_home
    from retentive.state.inspection import format_report, inspect_state

    report = inspect_state(args.state) if is_local(args.state) and not is_home(args.state) else _inspect_url(args.state)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        print(format_report(report))
    return 0 if report.verified else 1


def _ancestry(args: argparse.Namespace) -> int:
    from retentive.state import ancestry

    shown = str(args.state)
    if args.history:
        links = ancestry.home_history(args.state)
        ok = bool(links) and not any(link.problem for link in links)
        text = ancestry.format_history(shown, links) if links else f"history of {shown}: no version committed yet"
    else:
        links = ancestry.lineage_chain(args.state)
        ok = ancestry.chain_complete(links)
        text = ancestry.format_chain(shown, links)
    print(json.dumps(ancestry.as_json(links), indent=2, sort_keys=True, default=str) if args.json else text)
    return 0 if ok else 1


def _inspect_url(url: object) -> StateReport:
    """Fetch the committed state (verifying every checksum, or failing naming the file), then inspect it."""
    import tempfile
    from pathlib import Path

    from retentive.state.inspection import inspect_state
    from retentive.state.remote import fetch_state

    with tempfile.TemporaryDirectory(prefix="retentive-inspect-") as scratch:
        report = inspect_state(fetch_state(str(url), Path(scratch) / "state"))
        report.leftovers = []  # the temporary folder's surroundings say nothing about the URL
    report.path = str(url)
    return report
