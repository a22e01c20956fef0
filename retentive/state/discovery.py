"""The state folders of earlier updates beside an output folder, newest last.

A pipeline writes one state folder per chunk into one parent (``state/chunk_1``, ``state/chunk_2``,
...). An update given no input state folder whose output goes into such a parent has almost
always forgotten its input: the command line refuses it (``--from-scratch`` overrides) and
:meth:`~retentive.updaters.base.ModelUpdater.update` warns with :class:`StartsFreshWarning`
(Renate's semantics, a fresh start, are kept in Python). Both name the newest folder, ordered by
what the states say of themselves (the number of updates done, then the time written), not by
their names: ``chunk_10`` is newer than ``chunk_9``. Names only break ties, in natural order.
"""

from __future__ import annotations

import os
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path

from retentive.errors import StateError
from retentive.state.format import MANIFEST, read_manifest

_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


class StartsFreshWarning(UserWarning):
    """An update with no input state folder writes beside the state folders of earlier updates."""


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """``chunk_9`` before ``chunk_10``: digit runs compare as numbers, the rest as text."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part)


def _order(folder: Path) -> tuple[int, datetime, tuple[tuple[int, int | str], ...]] | None:
    """The sort key of a finished state folder (``None`` for anything else: a checkpoint, a
    staging folder, a folder whose manifest cannot be read)."""
    try:
        manifest = read_manifest(folder)
    except StateError:
        return None
    try:
        created = datetime.fromisoformat(str(manifest.get("created")))
    except (TypeError, ValueError):
        created = _EARLIEST
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    try:
        updates_done = int(manifest.get("updates_done", 0))
    except (TypeError, ValueError):  # a crafted or damaged manifest orders as the oldest
        updates_done = -1
    return updates_done, created, natural_key(folder.name)


def earlier_states(output: str | os.PathLike[str]) -> list[Path]:
    """The state folders beside ``output`` (not ``output`` itself), oldest first, newest last.

    Hidden folders (retentive's own: staging, resume checkpoints, kept versions) are skipped.
    """
    output = Path(output)
    try:
        candidates = [
            p
            for p in output.parent.iterdir()
            if p.name != output.name and not p.name.startswith(".") and (p / MANIFEST).is_file()
        ]
    except OSError:  # no parent yet: nothing beside it
        return []
    keyed = [(key, p) for p in candidates if (key := _order(p)) is not None]
    return [p for _, p in sorted(keyed, key=lambda pair: pair[0])]


def warn_if_starting_over(
    input_folder: str | os.PathLike[str] | None,
    output: str | os.PathLike[str] | None,
    updates_done: int = 0,
    stacklevel: int = 3,
) -> None:
    """Warn (:class:`StartsFreshWarning`) that an update with no input state starts a new model
    although ``output``'s parent holds state folders of earlier updates; name the newest ones.

    An updater that has already updated (``updates_done``) continues from what it holds.
    """
    if input_folder is not None or output is None or updates_done:
        return
    earlier = earlier_states(output)
    if not earlier:
        return
    parent = Path(output).parent
    shown = ", ".join(p.name for p in earlier[-3:])
    warnings.warn(
        f"no input_state_folder, so this update starts a new model, but {str(parent)!r} holds state folders of "
        f"earlier updates ({shown}): pass input_state_folder={str(earlier[-1])!r} to continue from the newest",
        StartsFreshWarning,
        stacklevel=stacklevel,
    )
