"""Removing samples from a state's memory, as a new version of the state.

A deletion never edits a state: it reads one, removes the named rows from the memory (compacting
its storage, so the removed samples are absent from the new ``memory.pt``'s bytes), and writes
the result as a new state, whole or not at all: in a model home, a new version promoted by
compare-and-swap against the version read (the old one stays in the home's history); for a
single state folder, a new output folder, or the folder itself through the crash-safe in-place
swap (:mod:`retentive.state.inplace`, the old state kept for ``retentive rollback``). The new
manifest lists the removed ids under ``memory_deletions``.

What a deletion does not do: the model's weights (and any statistics an update derived from the
memory, such as class means) still reflect what they learned from the removed samples, and
earlier versions in a home's history, resume checkpoints and a gate's held-out rows keep their
own copies until they are removed; re-training without the samples is the mitigation.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from retentive.errors import StateError
from retentive.governance.reading import MemoryView, read_memory
from retentive.governance.selection import ids_from_source, ids_matching, parse_ids
from retentive.state.format import State, save_state
from retentive.state.inplace import swap_in
from retentive.state.locking import OutputLock
from retentive.state.remote import publish_state
from retentive.state.remote.filesystem import is_url, open_url
from retentive.state.remote.layout import holds_state

#: manifest entries a new state gets afresh (written by the state format itself)
_FRESH = ("format", "format_version", "kind", "retentive_version", "torch_version", "created", "files", "replaces")
#: what every deletion record says about what it did not change
WEIGHTS_NOTE = "model weights unchanged: they may still reflect what they learned from the removed samples"


@dataclass(frozen=True)
class Deletion:
    """What a deletion did: the ids removed, the rows they held, and where the new state is."""

    removed_ids: list[int]
    rows_removed: int
    written: str
    version: str | None = None


def _selected(
    view: MemoryView, ids: Sequence[object] | None, source: str | None, where: Sequence[str] | None
) -> Tensor:
    given = [name for name, value in (("ids", ids), ("source", source), ("where", where)) if value]
    if len(given) != 1:
        raise ValueError(f"name the samples to delete one way: ids, source or where (got {given or 'none'})")
    if ids:
        return torch.tensor(parse_ids(ids), dtype=torch.int64)
    if source:
        return ids_from_source(view.memory, source)
    return ids_matching(view.memory, list(where or ()))


def _manifest(view: MemoryView, removed: list[int], rows: int, selector: str) -> dict[str, Any]:
    manifest = {key: value for key, value in view.state.manifest.items() if key not in _FRESH}
    memory = view.memory
    manifest["memory"] = {"size": len(memory), "seen": memory.seen, "keys": list(memory.keys)}
    record = {
        "removed_ids": removed,
        "rows_removed": rows,
        "selected_by": selector,
        "from_version": view.state.version,
        "note": WEIGHTS_NOTE,
    }
    manifest["memory_deletions"] = [*manifest.get("memory_deletions", []), record]
    return manifest


def delete_samples(
    location: str | os.PathLike[str],
    *,
    ids: Sequence[object] | None = None,
    source: str | None = None,
    where: Sequence[str] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> Deletion:
    """Remove samples from the memory of ``location`` (a model home or a state folder) as a new state.

    Name them one way: ``ids`` (sample ids), ``source`` (a chunk fingerprint or its first 6+
    characters) or ``where`` (predicates ``label=3``, ``task=0``, ``update=2``, all must hold).
    A model home (a state URL is one) gets a new current version; a state folder is written to
    ``output`` (a new folder, or a URL holding no state yet) or, without one, replaced in place (a
    plain folder at a URL, without ``current.json``, needs ``output``). Any id or selector naming
    nothing held raises :class:`~retentive.errors.SampleNotFoundError` and nothing is written.
    """
    view = read_memory(location)
    if view.home is not None and output is not None:
        raise ValueError("a model home gets the new state as its new version; output is for single state folders")
    wanted = _selected(view, ids, source, where)
    rows = view.memory.delete(wanted)
    removed = sorted({int(i) for i in wanted.tolist()})
    selector = (
        f"ids ({len(removed)})" if ids else f"source {source}" if source else "where " + " and ".join(where or ())
    )
    state = State(
        view.state.model, view.state.learner, view.memory.state_dict(), _manifest(view, removed, rows, selector)
    )
    return _write(view, state, removed, rows, location, output)


def _write(
    view: MemoryView,
    state: State,
    removed: list[int],
    rows: int,
    location: str | os.PathLike[str],
    output: str | os.PathLike[str] | None,
) -> Deletion:
    """Commit ``state``: a home's new version, a new output folder or URL, or the folder in place."""
    if view.home is not None:
        with tempfile.TemporaryDirectory(prefix="retentive-delete-") as scratch:
            candidate = view.home.write_candidate(save_state(Path(scratch) / "state", state))
            promoted = view.home.promote(candidate, expect=view.version)
        return Deletion(removed, rows, str(location), promoted.id)
    if output is not None and is_url(output):  # published as the URL's first version
        url = os.fspath(output)
        fs, root = open_url(url)
        if holds_state(fs, root, url):
            raise StateError(f"the output {url!r} already holds a state; choose a new one")
        with tempfile.TemporaryDirectory(prefix="retentive-delete-") as scratch:
            pointer = publish_state(save_state(Path(scratch) / "state", state), url, expect=None)
        return Deletion(removed, rows, url, pointer.version)
    if output is not None:
        return Deletion(removed, rows, str(save_state(output, state)))
    if view.url is not None:
        raise ValueError(
            f"{view.url!r} is a plain state folder at a URL (no current.json): it cannot be replaced in place; "
            "give an output folder or URL"
        )
    target = Path(location)
    lock = OutputLock(target).acquire()
    try:
        swap_in(target, state, lock, expected=view.state.version)
    finally:
        lock.release()
    return Deletion(removed, rows, str(target))
