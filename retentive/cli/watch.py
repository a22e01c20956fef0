"""``retentive watch SOURCE --home HOME --config CONFIG``: update a model home on every chunk that
arrives in a folder or under an ``s3://`` prefix, exactly once each, in name order; and
``retentive watch --status --home HOME``: what it has done (:mod:`retentive.service`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retentive.cli.arguments import add_epilog, add_overrides, add_threads
from retentive.cli.locations import state_location

EPILOG = """\
Each chunk file (.npz, .pt, .csv; names starting with '.' are skipped) is, in name order: read (a
file that is not a chunk is quarantined: recorded with its error, and the service goes on),
tested for shift against the serving version's memory (--shift: no shift, the chunk is skipped),
trained on the serving version with --config's updater, judged by the gate (--gate: refused, the
candidate is kept as the challenger) and promoted. One line per chunk on stdout. The home records
every chunk done (HOME/watch-ledger.json) atomically with the version it produced: killed at any
moment (even SIGKILL) and started again with the same command, the service takes no chunk twice
and skips none, and ends with exactly the versions an uninterrupted run ends with.

exit codes: 0 --once processed every chunk there, or --status printed; 1 an error you can fix (a
missing source, a home that is not a model home, a bad config, other settings than the home was
watched with: pass --reconfigure); 2 bad usage; 75 another watch service writes this home (nothing
written); 130 stopped by Ctrl-C, 143 stopped by SIGTERM: in both cases every chunk finished is
recorded, an update in flight was abandoned at a step boundary (or, when the signal came during its
commit, committed and recorded) and is taken again first at the next start.

example:
  retentive watch incoming/ --home models/digits --config configs/er.yaml --gate max_drop=2 --gate holdout=0.1
  retentive watch s3://bucket/chunks --home s3://bucket/home --config configs/er.yaml --shift mmd --poll 60
  retentive watch --status --home models/digits
"""

FLAGS = {"output_state_folder": "--home", "input_state_folder": "--home"}


def configure(parser: argparse.ArgumentParser) -> None:
    add_epilog(parser, EPILOG)
    parser.add_argument(
        "source",
        nargs="?",
        type=state_location,
        metavar="SOURCE",
        help="the folder or URL (s3://bucket/prefix) chunks arrive in",
    )
    parser.add_argument(
        "--home", required=True, type=state_location, metavar="HOME", help="the model home to update (a folder or URL)"
    )
    parser.add_argument(
        "--config", type=Path, default=None, metavar="CONFIG", help="the YAML config of `retentive update`"
    )
    add_overrides(parser, "override one config value, by dotted key (repeatable)")
    parser.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a gate criterion, as `retentive update --gate`",
    )
    parser.add_argument(
        "--shift", choices=("mmd", "ks", "labels"), default=None, help="update only when this test detects a shift"
    )
    parser.add_argument(
        "--shift-alpha", type=float, default=0.05, metavar="ALPHA", help="the shift test's level [0.05]"
    )
    parser.add_argument("--shift-seed", type=int, default=0, metavar="N", help="seeds the shift test [0]")
    parser.add_argument("--poll", type=float, default=5.0, metavar="SECONDS", help="look for new chunks this often [5]")
    parser.add_argument(
        "--settle", type=float, default=1.0, metavar="SECONDS", help="take a local file once it is this old [1]"
    )
    parser.add_argument("--once", action="store_true", help="process the chunks there now, then exit")
    parser.add_argument(
        "--reconfigure", action="store_true", help="accept settings other than the home was watched with"
    )
    parser.add_argument("--status", action="store_true", help="print what the service of --home has done, then exit")
    parser.add_argument("--json", action="store_true", help="with --status: print it as JSON")
    add_threads(parser)


def run(args: argparse.Namespace) -> int:
    from retentive.cli.failures import TERMINATED

    home = str(args.home)
    if args.status:
        return _print_status(home, args.json)
    if args.source is None or args.config is None:
        raise ValueError("retentive watch needs SOURCE and --config (or --status to read a home's progress)")
    import signal

    import torch

    from retentive.service import WatchService, WatchSettings

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = WatchSettings(
        args.config, tuple(args.overrides), tuple(args.gate), args.shift, args.shift_alpha, args.shift_seed
    )
    service = WatchService(
        str(args.source),
        home,
        settings,
        poll=args.poll,
        once=args.once,
        settle=args.settle,
        reconfigure=args.reconfigure,
    )
    stopped = service.run()
    if stopped is None:
        return 0
    print(f"retentive watch: stopped by {signal.Signals(stopped).name}; every chunk finished is recorded", flush=True)
    return TERMINATED if stopped == signal.SIGTERM else 130


def _print_status(home: str, as_json: bool) -> int:
    from retentive.service.status import format_status, read_status

    status = read_status(home)
    print(json.dumps(status, indent=2) if as_json else format_status(status), flush=True)
    return 0
