"""Reading the memory of a state folder or a model home's version, and listing what it holds.

The memory is read from ``memory.pt`` as saved (verified against the manifest, never running
code) and rebuilt as the backend that wrote it, so every question about it (which samples, from
which chunk, stored when) is answered from the same rows an update would replay.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from retentive.errors import StateError
from retentive.memory.buffer import ReplayBuffer
from retentive.memory.compact import dtype_name
from retentive.memory.identity import ROW_KEY, SOURCE_KEY
from retentive.memory.layout import is_input_key
from retentive.memory.policies import policy_from_name
from retentive.memory.unbounded import AppendPolicy, UnboundedBuffer
from retentive.state.format import State, load_state
from retentive.state.home import ModelHome, is_home
from retentive.state.remote import fetch_state
from retentive.state.remote.filesystem import is_url


@dataclass
class MemoryView:
    """A state's memory, rebuilt: ``memory`` is the backend, ``state`` the whole state it came from.

    ``home`` and ``version`` are set when it was read from a model home (``version``: the version
    id); ``folder`` when it was read from a single state folder; ``url`` when it was read from a
    plain state folder at a URL (one copied there, without ``current.json``).
    """

    memory: ReplayBuffer
    state: State
    home: ModelHome | None = None
    version: str | None = None
    folder: Path | None = None
    url: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One record per stored sample, in slot order: its id, label, task, source chunk and update."""
        memory, n = self.memory, len(self.memory)
        if n == 0:
            return []
        sources = memory.source_entries()
        columns = {
            "sample_id": memory.sample_ids().tolist(),
            "label": memory.decoded("targets").tolist(),
            "task_id": memory.decoded("task_ids").tolist(),
            "source": memory.decoded(SOURCE_KEY).tolist(),
            "row": memory.decoded(ROW_KEY).tolist(),
        }
        records = []
        for slot in range(n):
            source = sources[columns["source"][slot]]
            records.append(
                {
                    "slot": slot,
                    "sample_id": columns["sample_id"][slot],
                    "label": columns["label"][slot],
                    "task_id": columns["task_id"][slot],
                    "source": source["fingerprint"],
                    "row": columns["row"][slot],
                    "stored_in_update": source["update"],
                }
            )
        return records


def _input_dtype(saved: dict[str, Any]) -> torch.dtype | None:
    """The compact dtype the saved inputs are stored in (``None``: as offered), so a rewrite keeps it."""
    storage: dict[str, Tensor] = saved.get("storage") or {}
    offered: dict[str, str] = saved.get("dtypes") or {}
    for key, value in storage.items():
        if is_input_key(key) and key in offered and offered[key] != dtype_name(value.dtype):
            return value.dtype
    return None


def rebuild_memory(saved: dict[str, Any]) -> ReplayBuffer:
    """The sample memory a saved ``memory.pt`` holds, as the backend that wrote it."""
    if saved.get("kind") is not None or "storage" not in saved:
        raise StateError(
            "this state's memory is generative: it stores a generator, not samples, so there are no sample ids "
            "to list, delete or export (what it learned from a sample lives in its weights)"
        )
    policy = str(saved["policy"])
    memory: ReplayBuffer
    if policy == AppendPolicy.name:
        memory = UnboundedBuffer()
    else:
        memory = ReplayBuffer(int(saved["capacity"]), policy=policy_from_name(policy), input_dtype=_input_dtype(saved))
    memory.load_state_dict(saved)
    return memory


def read_memory(location: str | os.PathLike[str], version: str | None = None) -> MemoryView:
    """The memory of a state folder, or of a model home's ``version`` (default: the current one)."""
    where = os.fspath(location)
    if is_url(where) or is_home(where):
        home = ModelHome(where)
        target = home.current() if version is None else version
        if target is None and is_url(where):  # no pointer: a plain state folder there, or nothing
            with tempfile.TemporaryDirectory(prefix="retentive-memory-") as scratch:
                state = load_state(fetch_state(where, Path(scratch) / "state"))
            return MemoryView(rebuild_memory(state.memory), state, url=where)
        if target is None:
            raise StateError(f"the model home {where!r} has no current version yet; nothing to read")
        version_id = target if isinstance(target, str) else target.id
        with tempfile.TemporaryDirectory(prefix="retentive-memory-") as scratch:
            state = load_state(home.fetch(Path(scratch) / "state", version_id))
        return MemoryView(rebuild_memory(state.memory), state, home=home, version=version_id)
    if version is not None:
        raise StateError(f"{where!r} is a single state folder, not a model home: it has no versions to choose from")
    state = load_state(where)
    return MemoryView(rebuild_memory(state.memory), state, folder=Path(where))
