"""``retentive update``'s gate and registry: ``--gate NAME=VALUE`` and ``--gate-data`` over the
config's ``gate:``, and ``--registry URI``.

The gate is built, and every held-out file read, before the updater is built, so an unknown
criterion, a limit out of range or a gate without held-out data costs nothing. A candidate the
gate rejects is not an error: the current version keeps serving, the candidate is kept as the
challenger, one line says why, and the command exits with :data:`GATE_REJECTED`.

A gated update keeps a rejected candidate beside the serving version, so it writes to a model
home: ``--output-state DIR`` with a gate makes an absent or empty local ``DIR`` a home (one line
says so), the first step of a pipeline. Without a gate, ``--output-state`` is a single state
folder exactly as before.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: the exit code of an update whose candidate its gate rejected (distinct from errors, 1, and from
#: ``retentive shift``'s 3): the current version still serves; the candidate is the challenger
GATE_REJECTED = 4


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a gate criterion (repeatable; over the config's gate: section): max_drop=POINTS on any earlier chunk, "
        "min_new_accuracy=FRACTION on the new chunk, max_negative_flip_rate=FRACTION against the current model, "
        "custom=module:function; holdout=FRACTION holds back that share of each chunk for the gate",
    )
    parser.add_argument(
        "--gate-data",
        action="append",
        default=[],
        type=Path,
        metavar="CHUNK",
        help="held-out data for the gate instead of holdout= (repeatable): one chunk file per chunk seen so far, "
        "the new chunk's last",
    )


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        default=None,
        metavar="URI",
        help="mirror the decision in an MLflow model registry (pip install 'retentive[mlflow]'): a tracking URI "
        "(http://host:5000, sqlite:///path.db) or 'local' (./mlruns); checked before anything trains or changes",
    )
    parser.add_argument(
        "--registry-model",
        default="retentive",
        metavar="NAME",
        help="the registered model's name [retentive]",
    )


def open_registry(args: argparse.Namespace) -> Any:
    """The registry ``--registry`` names, checked now (an unreachable one fails before training), or ``None``."""
    if args.registry is None:
        return None
    from retentive.registry import open_registry as open_named

    registry = open_named(args.registry, model_name=args.registry_model)
    registry.check()
    return registry


def prepare_home(args: argparse.Namespace, gate: Any) -> None:
    """A gated update into an absent or empty local ``--output-state`` folder: make it a model home."""
    from retentive.cli.locations import is_local

    folder = args.output_state
    if gate is None or folder is None or not is_local(folder):
        return
    path = Path(folder)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        return  # a home already, or not one: the update says which it is
    from retentive.state.home import ModelHome

    ModelHome(path).create()  # idempotent: under DDP every rank may make it, global rank 0 says so
    from retentive.distributed import launched_as_global_zero

    if launched_as_global_zero():
        print(f"retentive update: created the model home {path} (a gated update keeps its versions there)", flush=True)


def _entries(items: list[str]) -> dict[str, Any]:
    from retentive.cli.config.parsing import parse_yaml
    from retentive.gates.errors import GateConfigError

    entries: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise GateConfigError(f"--gate {item!r}: expected NAME=VALUE, e.g. --gate max_drop=2")
        entries[name.strip()] = parse_yaml(value, f"--gate {item}")
    return entries


def build_gate(args: argparse.Namespace, config: Any) -> Any:
    """The gate the config and the flags state, or ``None``; each held-out file read and checked."""
    from retentive.cli.config.gate import HOLDOUT, parse_gate
    from retentive.cli.config.schema import Source
    from retentive.data.files import read_chunk
    from retentive.gates import Gate
    from retentive.gates.errors import GateConfigError

    spec = {**config.gate, **parse_gate(_entries(args.gate), Source("--gate"), "")}
    holdout = spec.pop(HOLDOUT, None)
    if not spec:
        if args.gate_data or holdout is not None:
            raise GateConfigError("--gate-data or holdout name held-out data for a gate, but no gate criterion is set")
        return None
    if args.gate_data and holdout is not None:
        raise GateConfigError("the gate's held-out data is named twice: pass --gate-data or holdout, not both")
    if not args.gate_data and holdout is None:
        raise GateConfigError(
            "a gate needs held-out data: pass --gate holdout=FRACTION (held back from each chunk and kept in the "
            "model home) or --gate-data CHUNK (one per chunk seen so far, the new chunk's last)"
        )
    data = [read_chunk(path) for path in args.gate_data] or None
    return Gate(spec, holdout=holdout, data=data)


def report_rejection(args: argparse.Namespace, rejected: Any, summary: dict[str, Any]) -> int:
    """One line on stdout for a rejected candidate, its report in ``--summary``; the exit code.
    Under DDP every rank is rejected alike and global rank 0 alone reports."""
    from retentive.distributed import launched_as_global_zero

    if not launched_as_global_zero():
        return GATE_REJECTED
    print(f"retentive update: {rejected}", flush=True)
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        document = {**summary, "gate": rejected.report.as_dict()}
        args.summary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return GATE_REJECTED
