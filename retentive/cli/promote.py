"""``retentive promote HOME [VERSION | --challenger]``: make a version of a model home the one served.

The version (by id, as ``retentive inspect HOME --history`` lists it; or the challenger a gate
kept) is verified, then committed as current only while the home's current version is still the
one read (or ``--expect``'s). Exit codes say whether a commit happened: 0 committed (or the
version was already current: nothing to do), 1 refused with nothing committed (no such version,
it does not verify), 75 another writer changed the current version first: nothing committed.
``--registry URI`` moves the registry's ``champion`` to the promoted version (and clears
``challenger`` if it pointed there); the registry is checked before the home changes.
"""

from __future__ import annotations

import argparse

from retentive.cli.gating import add_registry_options, open_registry
from retentive.cli.locations import state_location


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("home", type=state_location, metavar="HOME", help="a model home: a folder or a URL (s3://...)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("version", nargs="?", metavar="VERSION", help="the id of the version to promote")
    which.add_argument("--challenger", action="store_true", help="promote the challenger a gate kept")
    parser.add_argument(
        "--expect", metavar="VERSION", help="commit only if this is still the current version (compare-and-swap)"
    )
    add_registry_options(parser)


def run(args: argparse.Namespace) -> int:
    from retentive.errors import StateError
    from retentive.registry.serving import promote
    from retentive.state.home import AT_START, ModelHome, is_home

    if not is_home(args.home):
        raise StateError(
            f"{str(args.home)!r} is not a model home (no current.json or versions/ there); promote works on homes"
        )
    registry = open_registry(args)  # an unreachable registry: refused before the home changes
    home = ModelHome(args.home)
    before = home.current()
    version = args.version
    if args.challenger:
        challenger = home.challenger()
        if challenger is None:
            raise StateError(f"{home.location!r} has no challenger to promote")
        version = challenger.id
    expect = args.expect if args.expect is not None else AT_START
    promoted = promote(home, version, registry=registry, expect=expect)
    if before is not None and before.id == promoted.id:
        print(f"{home.location}: version {promoted.id} is already current; nothing to do")
    else:
        was = "no current version" if before is None else f"version {before.id}"
        print(f"promoted {home.location} to version {promoted.id} (was {was})")
    return 0
