"""``retentive memory refit`` and ``retentive memory delete --refit``: re-train the model on its
remaining memory for N epochs (:meth:`retentive.updaters.base.ModelUpdater.refit`), as a new version.

The updater is built from the YAML config the state was updated with (its model, loss and
optimizer), reading the state to refit and writing the new one: by default the same location (a
model home or URL: a new version, the old one kept as previous; a single folder: in place, with a
rollback copy), or ``--output-state``. Importing this module must stay cheap (no torch).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from retentive.cli.arguments import add_overrides, add_threads

REFIT_NOTE = """\
refit: re-trains the model on the samples the memory still holds (the task loss, no replay, no
loss components), through the same fit path and random streams as an update, and writes a new
version (lineage.refit: epochs, samples, step batch). It reduces, it does not remove, what the
weights learned from deleted samples: see docs/how-to/refit.md and the measured remaining
influence in docs/benchmarks/deletion.md.
"""


def add_refit_options(parser: argparse.ArgumentParser, required: bool) -> None:
    """``--config`` (the YAML the state was updated with: the refit's updater, model, loss and
    optimizer), ``--set``, ``--threads`` and ``--summary``."""
    parser.add_argument(
        "--config",
        required=required,
        type=Path,
        default=None,
        metavar="CONFIG",
        help="the YAML config the state was updated with: its updater, model, loss and optimizer refit it",
    )
    add_overrides(parser, "override one config value for the refit, e.g. --set optimizer.init_args.lr=0.01")
    add_threads(parser)
    parser.add_argument(
        "--summary", type=Path, default=None, metavar="FILE", help="also write the refit's result as JSON"
    )


def check_refit_arguments(args: argparse.Namespace, epochs: int | None) -> None:
    """A refit needs the config its updater is built from: a missing or bad one is refused before
    the deletion writes anything."""
    if epochs is None:
        return
    if getattr(args, "config", None) is None:
        raise ValueError(
            "--refit re-trains the model, so it needs --config, the YAML config the state was updated with"
        )
    from retentive.cli.config import load_config

    load_config(args.config, args.overrides)


def refit_state(
    args: argparse.Namespace, state: Any, output: Any, epochs: int, command: str, after_deletion: bool = False
) -> dict[str, Any]:
    """Refit ``state`` for ``epochs`` epochs into ``output`` (the same location: a new version
    there); prints one line and returns the summary (also written to ``--summary``). After a
    deletion, a refit that fails says first that the deletion itself is committed."""
    import torch

    from retentive.cli.config import build_updater, load_config

    if getattr(args, "threads", None) is not None:
        torch.set_num_threads(args.threads)
    try:
        config = load_config(args.config, args.overrides)
        updater = build_updater(config, input_state_folder=state, output_state_folder=output, resume=False)
        samples, start = len(updater.memory), time.perf_counter()
        updater.refit(epochs)
    except Exception:
        if after_deletion:  # the error follows on its own line; the deletion stands either way
            print(f"retentive {command}: the deletion is committed; the refit failed", file=sys.stderr, flush=True)
        raise
    seconds = time.perf_counter() - start
    summary = {
        "updater": type(updater).__name__,
        "state": str(state),
        "output_state": str(output),
        "epochs": epochs,
        "samples": samples,
        "seconds": round(seconds, 3),
        "manifest_sha256": updater.state_version,
    }
    if updater.global_rank == 0:
        print(
            f"retentive {command}: {summary['updater']} refit for {epochs} epochs on the {samples} samples "
            f"the memory holds in {seconds:.1f} s; state -> {output}",
            flush=True,
        )
        if getattr(args, "summary", None) is not None:
            args.summary.parent.mkdir(parents=True, exist_ok=True)
            args.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
