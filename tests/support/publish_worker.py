"""Worker processes for the remote-state tests (run with the tree under test on PYTHONPATH).

    python tests/support/publish_worker.py URL FOLDER_A FOLDER_B          a writer to kill
    python tests/support/publish_worker.py race URL ROUNDS FOLDER_A FOLDER_B
    python tests/support/publish_worker.py read URL SCRATCH

A writer to kill: for each ``go`` line on stdin it forks a child that publishes the two folders to
URL alternately until the test SIGKILLs it. Prints ``ready`` once imported, then for each ``go``
the child's pid, ``started`` when the child begins publishing, and ``reaped`` once the child is
dead. Forking spares each kill the imports (seconds on a loaded machine), so the kills land
inside publish_state.

``race``: after ``ready`` and a ``go`` line, publishes the folders alternately ROUNDS times, as
fast as it can, and prints one JSON line per round: ``{"ok": version, "parent": version}`` for a
commit (parent: the version it replaced), ``{"conflict": message}`` for a StateConflictError,
``{"error": message}`` for any other failure; then ``done``.

``read``: after ``ready`` and a ``go`` line, fetches URL (every checksum verified) until stdin
closes, then prints ``{"reads": n, "errors": [messages]}``.
"""

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import torch

torch.set_num_threads(1)

from retentive.errors import StateConflictError  # noqa: E402
from retentive.state.remote import fetch_state, publish_state  # noqa: E402
from retentive.state.remote.filesystem import open_url  # noqa: E402


def kill_target(url: str, folders: list[Path]) -> None:
    open_url(url)[0].exists(url)  # s3fs imported and used once
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        pid = os.fork()
        if pid == 0:  # the child: publish until killed (fsspec starts a fresh event loop after a fork)
            open_url(url)[0].exists(url)
            print("started", flush=True)
            round_ = 0
            while True:
                publish_state(folders[round_ % 2], url)
                round_ += 1
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("reaped", flush=True)


def race(url: str, rounds: int, folders: list[Path]) -> None:
    open_url(url)[0].exists(url)
    print("ready", flush=True)
    sys.stdin.readline()
    for round_ in range(rounds):
        try:
            pointer = publish_state(folders[round_ % 2], url)
        except StateConflictError as error:
            print(json.dumps({"conflict": str(error)}), flush=True)
            continue
        except Exception as error:  # reported, never hidden
            print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
            continue
        if pointer is None:  # a publish_state that reports no pointer
            print(json.dumps({"ok": None, "parent": None}), flush=True)
            continue
        parent = pointer.previous[0]["version"] if pointer.previous else None
        print(json.dumps({"ok": pointer.version, "parent": parent}), flush=True)
    print("done", flush=True)


def read(url: str, scratch: Path) -> None:
    open_url(url)[0].exists(url)
    print("ready", flush=True)
    sys.stdin.readline()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    reads, errors = 0, []
    while not stop.is_set():
        target = scratch / f"read-{reads}"
        try:
            fetch_state(url, target)
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
        shutil.rmtree(target, ignore_errors=True)
        reads += 1
    print(json.dumps({"reads": reads, "errors": errors}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "race":
        race(sys.argv[2], int(sys.argv[3]), [Path(p) for p in sys.argv[4:6]])
    elif sys.argv[1] == "read":
        read(sys.argv[2], Path(sys.argv[3]))
    else:
        kill_target(sys.argv[1], [Path(p) for p in sys.argv[2:4]])
