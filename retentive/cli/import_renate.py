"""``retentive import-renate RENATE_FOLDER NEW_FOLDER``: a Renate state folder as a v1 state folder
(the logic is :func:`retentive.state.renate.import_renate`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    from retentive.methods.registry import renate_importable  # the registry imports no torch

    updaters = sorted(renate_importable())
    parser.add_argument("renate_folder", type=Path, metavar="RENATE_FOLDER", help="a Renate 0.5.2 state folder")
    parser.add_argument(
        "new_folder", type=Path, metavar="NEW_FOLDER", help="the state folder to write (must not exist)"
    )
    parser.add_argument(
        "--updater",
        choices=updaters,
        default=None,
        help="the updater that continues from it [DER with stored logits, else ER]",
    )


def run(args: argparse.Namespace) -> int:
    from retentive.state.renate import import_renate

    folder = import_renate(args.renate_folder, args.new_folder, args.updater)
    print(f"wrote {folder}")
    return 0
