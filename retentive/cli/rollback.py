"""``retentive rollback STATE``: put back the version the last in-place update of STATE replaced
(a local folder: :func:`retentive.state.inplace.rollback`), or, for a URL, commit again the version
committed before the current one (:func:`retentive.state.remote.rollback_url`)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("state", metavar="STATE", help="a state folder updated in place, or a state URL (s3://...)")


def run(args: argparse.Namespace) -> int:
    from retentive.state.remote import is_url, local_path

    if is_url(args.state):
        from retentive.state.remote import rollback_url

        version = rollback_url(args.state)
        print(f"rolled back {args.state.rstrip('/')} to version {version}")
        return 0
    from retentive.state.inplace import rollback

    print(f"rolled back {rollback(local_path(args.state))}")
    return 0
