"""``retentive rollback STATE``: the previous version serves again.

In a model home (a folder with ``current.json``/``versions/``, or a URL) the pointer goes back to
the version committed before the current one, which is kept as a rejected version
(:meth:`retentive.state.home.ModelHome.rollback`); a local folder updated in place gets back the
version its last in-place update replaced (:func:`retentive.state.inplace.rollback`). Exit 0: the
rollback is committed; 1: refused, nothing changed; 75: another writer changed it first.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "state", metavar="STATE", help="a model home, a state URL (s3://...), or a state folder updated in place"
    )


def run(args: argparse.Namespace) -> int:
    from retentive.state.home import is_home
    from retentive.state.remote import is_url, local_path

    if is_url(args.state):
        from retentive.state.remote import rollback_url

        version = rollback_url(args.state)
        print(f"rolled back {args.state.rstrip('/')} to version {version}")
        return 0
    if is_home(args.state):
        from retentive.state.home import ModelHome

        home = ModelHome(args.state)
        print(f"rolled back {home.location} to version {home.rollback().id}")
        return 0
    from retentive.state.inplace import rollback

    print(f"rolled back {rollback(local_path(args.state))}")
    return 0
