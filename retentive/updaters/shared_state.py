"""Data-parallel ranks share one state: they start from it alike, and all of them see what rank 0 writes.

Under DDP every rank reads the input state and rank 0 alone writes the output (the other ranks
hold the same replica, :mod:`retentive.learner.replicas`). On several nodes that works only if
the state folders are at a location every node sees: a shared filesystem path, or a URL
(``s3://...``, a model home). A node-local path that happens to exist on every machine is the
usual mistake: each node then reads its own stale copy, and the folder rank 0 writes is missing
on the others, so their next update starts from something else. Two checks say so at once:

- :class:`StartAgreement`, when a fit starts: the ranks compare the version of the input state
  they read, the resume checkpoint they continue from, their memory and their component state
  (sha256, one all-gather); a difference is an error on every rank before anything is trained.
- :func:`check_visible`, after rank 0's commit: every rank reads the committed folder's version
  and compares it with rank 0's; a rank that does not see it fails every rank.

See docs/how-to/multi-node.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from retentive.distributed import all_gather_objects, all_gather_stacked, check_identical
from retentive.errors import StateError
from retentive.state.concurrency import manifest_digest

SHARED_LOCATION = (
    "on several nodes the state folders must be at a location every node sees "
    "(a path on a shared filesystem, or a URL), see docs/how-to/multi-node.md"
)


class StartAgreement(pl.Callback):
    """Before a DDP fit trains, every rank must hold the same start (``parts()``, compared by sha256)."""

    def __init__(self, parts: Callable[[], Mapping[str, Any]]) -> None:
        self.parts = parts

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            check_identical(
                self.parts(),
                all_gather_stacked,
                trainer.strategy.root_device,
                when="before the update",
                consequence="nothing was trained",
            )


def check_visible(folder: Path, version: str | None) -> None:
    """Raise StateError on every rank unless every rank sees ``version`` (rank 0's commit) in ``folder``.

    Every rank must call it, after rank 0 committed (``version`` broadcast from rank 0).
    """
    seen = all_gather_objects(version is not None and manifest_digest(folder) == version)
    blind = [rank for rank, sees in enumerate(seen) if not sees]
    if blind:
        ranks = ", ".join(str(r) for r in blind)
        raise StateError(
            f"rank 0 wrote the state to {str(folder)!r}, but rank {ranks} does not see it there: {SHARED_LOCATION}. "
            "The state is committed on rank 0's machine only"
        )
