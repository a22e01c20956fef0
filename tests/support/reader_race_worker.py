"""A worker for the reader-isolation race (tests/e2e/test_isolated_readers.py), run as its own process.

``swap FOLDER SECONDS``: replace the state folder FOLDER in place again and again (swap_in, and a
rollback every third round), each new version marked with a fresh counter that its manifest, its
learner payload, its model and its memory all carry. ``read FOLDER SECONDS``: load_state FOLDER in
a loop and check every load is one whole version (the four marks agree). Both print one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

from retentive.errors import StateError  # noqa: E402
from retentive.state import State, load_state  # noqa: E402
from retentive.state.inplace import rollback, swap_in  # noqa: E402
from retentive.state.locking import OutputLock  # noqa: E402

ROWS = 64  # payloads of ~100-200 KB: reading one takes long enough for swaps to land mid-load


def marked_state(counter: int) -> State:
    """A small state whose every file carries ``counter``."""
    return State(
        model={"w": torch.full((ROWS, 256), float(counter))},
        learner={"counter": counter, "pad": torch.zeros(ROWS, 128)},
        memory={"size": ROWS, "storage": {"inputs": torch.full((ROWS, 512), float(counter))}},
        manifest={"marker": counter},
    )


def marks(state: State) -> set[int]:
    """The counters a loaded state carries in its manifest and its three payloads (one if whole)."""
    return {
        int(state.manifest["marker"]),
        int(state.learner["counter"]),
        int(state.model["w"][0, 0]),
        int(state.memory["storage"]["inputs"][-1, -1]),
    }


def swap(folder: Path, seconds: float) -> dict[str, int]:
    counter, swaps, rollbacks = 1, 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if swaps and swaps % 3 == 0 and rollbacks < swaps // 3:
            rollback(folder)
            rollbacks += 1
            continue
        counter += 1
        lock = OutputLock(folder).acquire()
        try:
            swap_in(folder, marked_state(counter), lock)
        finally:
            lock.release()
        swaps += 1
    return {"swaps": swaps, "rollbacks": rollbacks}


def read(folder: Path, seconds: float) -> dict[str, object]:
    loads, mixed, errors, versions = 0, 0, [], set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            state = load_state(folder)
        except StateError as error:
            errors.append(str(error))
            continue
        loads += 1
        seen = marks(state)
        versions |= seen
        mixed += len(seen) != 1
    return {
        "loads": loads,
        "mixed": mixed,
        "errors": len(errors),
        "first_errors": errors[:3],
        "versions": len(versions),
    }


if __name__ == "__main__":
    role, target, duration = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(swap(target, duration) if role == "swap" else read(target, duration)), flush=True)
