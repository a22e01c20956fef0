"""``retentive memory list|delete|export|refit STATE``: what a state's replay memory holds, removing
samples from it on request, and exporting it for a person to read (:mod:`retentive.governance`).

``STATE`` is a model home (a folder with ``current.json``/``versions/``, or a URL) or a single
state folder. ``delete`` writes a new state whole or not at all: a home gets a new current version
(compare-and-swap; the old one stays in its history); a state folder is written to ``--output`` (a
new folder or URL) or, without it, replaced in place (``retentive rollback`` brings the old one back). Exit 0: listed,
exported, or the deletion committed; 1: refused (an id not held, a bad selector), nothing written;
75: another writer changed the state first, nothing written.
"""

from __future__ import annotations

import argparse

from retentive.cli.arguments import add_epilog, positive_int
from retentive.cli.refit import REFIT_NOTE, add_refit_options, check_refit_arguments, refit_state

DOES_NOT = (
    "what a deletion does NOT do: the model's weights (and statistics such as class means) still reflect what "
    "they learned from a removed sample; earlier versions in a home's history, resume checkpoints and a gate's "
    "held-out rows keep their own copies until removed. --refit EPOCHS re-trains on the remaining memory, which "
    "reduces little of it (measured: docs/how-to/refit.md)."
)
EPILOG = f"""examples:
  retentive memory list HOME --json
  retentive memory delete HOME --ids 7235563732656561878,4414490638239850298
  retentive memory delete HOME --ids 7235563732656561878 --refit 5 --config configs/er.yaml
  retentive memory refit HOME --epochs 5 --config configs/er.yaml
  retentive memory delete state/ --source 46d5d699d6ba --output state-clean/
  retentive memory delete HOME --where label=3
  retentive memory export HOME inspect/

{DOES_NOT}

exit codes: 0 done (a deletion committed); 1 refused, nothing written; 75 another writer changed the state
first, nothing written: run again."""
FLAGS = {"ids": "--ids", "source": "--source", "where": "--where", "output": "--output"}


def configure(parser: argparse.ArgumentParser) -> None:
    add_epilog(parser, EPILOG)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    listing = verbs.add_parser("list", help="one line per stored sample: id, label, task, source chunk, update")
    listing.add_argument("state", metavar="STATE", help="a model home, a state URL, or a state folder")
    listing.add_argument("--version", help="a model home's version id (default: the current one)")
    listing.add_argument("--json", action="store_true", help="print the records as one JSON document")
    delete = verbs.add_parser("delete", help="remove samples from the memory as a new version of the state")
    add_epilog(delete, DOES_NOT)
    delete.add_argument("state", metavar="STATE", help="a model home, a state URL, or a state folder")
    chosen = delete.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--ids", nargs="+", metavar="ID", help="sample ids (spaces or commas between them)")
    chosen.add_argument("--source", metavar="CHUNK", help="every sample of one chunk (its fingerprint, 6+ chars)")
    chosen.add_argument("--where", nargs="+", metavar="FIELD=VALUE", help="label=3, task=0, update=2 (all hold)")
    delete.add_argument(
        "--output", metavar="FOLDER", help="a state folder: write the new state to this new folder or URL, not in place"
    )
    delete.add_argument(
        "--refit",
        type=positive_int,
        metavar="EPOCHS",
        help="then re-train the model on the remaining memory for EPOCHS epochs (needs --config), a second new version",
    )
    add_refit_options(delete, required=False)
    refit = verbs.add_parser("refit", help="re-train the model on what its memory holds, as a new version")
    add_epilog(refit, REFIT_NOTE)
    refit.add_argument("state", metavar="STATE", help="a model home, a state URL, or a state folder")
    refit.add_argument("--epochs", type=positive_int, required=True, help="epochs over the memory")
    refit.add_argument("--output", metavar="FOLDER", help="a state folder: write the refit state here, not in place")
    add_refit_options(refit, required=True)
    export = verbs.add_parser("export", help="write the memory to a folder: index.csv/json, samples.npz, PNGs")
    export.add_argument("state", metavar="STATE", help="a model home, a state URL, or a state folder")
    export.add_argument("output", metavar="FOLDER", help="the folder to create")
    export.add_argument("--version", help="a model home's version id (default: the current one)")


def _print_rows(rows: list[dict[str, object]]) -> None:
    print(f"{'slot':>6} {'sample_id':>20} {'label':>5} {'task':>4} {'update':>6} {'row':>7}  source")
    for r in rows:
        print(
            f"{r['slot']:>6} {r['sample_id']:>20} {r['label']:>5} {r['task_id']:>4} "
            f"{r['stored_in_update']:>6} {r['row']:>7}  {str(r['source'])[:16]}"
        )
    print(f"{len(rows)} samples")


def run(args: argparse.Namespace) -> int:
    from retentive import governance

    if args.verb == "list":
        import json

        rows = governance.list_memory(args.state, args.version)
        if args.json:
            print(json.dumps({"state": args.state, "version": args.version, "samples": rows}, indent=1))
        else:
            _print_rows(rows)
        return 0
    if args.verb == "export":
        folder = governance.export_memory(args.state, args.output, args.version)
        print(f"exported the memory of {args.state} to {folder}")
        return 0
    if args.verb == "refit":
        refit_state(args, args.state, args.output or args.state, args.epochs, "memory refit")
        return 0
    check_refit_arguments(args, args.refit)  # refused before anything is deleted
    done = governance.delete_samples(args.state, ids=args.ids, source=args.source, where=args.where, output=args.output)
    where = f"version {done.version} of {done.written}" if done.version else done.written
    print(f"deleted {done.rows_removed} stored samples ({len(done.removed_ids)} ids); the new state is {where}")
    if args.refit is not None:
        refit_state(args, done.written, done.written, args.refit, "memory delete", after_deletion=True)
        return 0
    print(f"note: {governance.WEIGHTS_NOTE}")
    return 0


def outputs(args: argparse.Namespace) -> list[str]:
    """The local folder ``export`` or ``delete --output`` creates (removed again if the command fails)."""
    from retentive.state.remote.filesystem import is_url

    folder = getattr(args, "output", None)
    return [folder] if folder and not is_url(folder) else []
