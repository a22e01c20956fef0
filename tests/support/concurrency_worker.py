"""A real process for the concurrency tests: build an in-place DER++ updater of FOLDER, say so, wait
for GO to exist, run the update on CHUNK (a .pt of inputs/targets) and print the outcome as JSON.

    python concurrency_worker.py FOLDER CHUNK GO

Its last stdout line is ``{"outcome": "committed"|"conflict"|"locked"|"error", "message": ...,
"updates_done": ...}``; its first is ``built``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

from state_helpers import der  # noqa: E402 (threads are set before anything builds a model)

from retentive.data import TensorChunk  # noqa: E402
from retentive.errors import StateConflictError, StateLockedError  # noqa: E402


def main() -> int:
    folder, chunk_file, go = (Path(a) for a in sys.argv[1:4])
    data = torch.load(chunk_file, weights_only=True)
    chunk = TensorChunk(data["inputs"], data["targets"])
    updater = der(folder, folder)
    print("built", flush=True)
    deadline = time.monotonic() + 120
    while not go.exists():
        if time.monotonic() > deadline:
            return 2
        time.sleep(0.005)
    result: dict[str, object]
    try:
        updater.update(chunk, task_id=1)
        result = {"outcome": "committed", "updates_done": updater.updates_done}
    except StateConflictError as error:
        result = {"outcome": "conflict", "message": str(error)}
    except StateLockedError as error:
        result = {"outcome": "locked", "message": str(error)}
    except Exception as error:  # noqa: BLE001 - reported to the test
        result = {"outcome": "error", "message": f"{type(error).__name__}: {error}"}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
