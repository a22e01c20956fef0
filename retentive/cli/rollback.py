"""``retentive rollback STATE``: the previous version serves again.

In a model home (a folder with ``current.json``/``versions/``, or a URL) the pointer goes back to
the version committed before the current one, which is kept as a rejected version
(:meth:`retentive.state.home.ModelHome.rollback`); a local folder updated in place gets back the
version its last in-place update replaced (:func:`retentive.state.inplace.rollback`). Exit 0: the
rollback is committed; 1: refused, nothing changed; 75: another writer changed it first.
``--registry URI`` (homes and URLs) moves the registry's ``champion`` to the version that serves
again; the registry is checked before anything changes.
"""

from __future__ import annotations

import argparse

from retentive.cli.gating import add_registry_options, open_registry


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "state", metavar="STATE", help="a model home, a state URL (s3://...), or a state folder updated in place"
    )
    add_registry_options(parser)


def run(args: argparse.Namespace) -> int:
    from retentive.errors import StateError
    from retentive.state.home import ModelHome, is_home
    from retentive.state.remote import is_url, local_path

    if is_url(args.state) or is_home(args.state):  # a URL's state is a home's layout
        from retentive.registry.serving import rollback

        registry = open_registry(args)  # an unreachable registry: refused before the home changes
        home = ModelHome(args.state)
        print(f"rolled back {home.location} to version {rollback(home, registry=registry).id}")
        return 0
    if args.registry is not None:
        raise StateError(
            f"--registry follows a model home's versions, but {args.state!r} is a state folder updated in place"
        )
    from retentive.state.inplace import rollback as rollback_in_place

    print(f"rolled back {rollback_in_place(local_path(args.state))}")
    return 0
