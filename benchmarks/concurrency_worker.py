"""One process of benchmarks/concurrency.py: a writer or a reader looping on one state location.

    python benchmarks/concurrency_worker.py writer|reader --index I --location LOC --log FILE.jsonl
        [--chunk FILE.npz] [--exact model.pt,learner.pt] [--scratch DIR]

It imports everything, prints ``ready``, waits for ``go <deadline>`` (a Unix time) on stdin, then
loops until the deadline, starting no new attempt after it. Every attempt or read is one JSON line
in the log, flushed at once, so that a process killed by the orchestrator loses nothing it decided.

A writer builds a DER updater (tiny MNIST MLP, memory 50, one epoch, one thread) reading and
writing the location (in place), and updates it with its own chunk under a task id unique to the
attempt (``w<I>-<n>``): the final state's ``task_order`` is then the exact list of the updates it
descends from. A reader loads the state (a URL fetched into a temporary folder first) and records
what :func:`concurrency_checks.inspect_read` finds.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from concurrency_checks import error_text, fingerprint, inspect_read, is_false_tamper  # noqa: E402
from quiet_cpu import QUIET_CPU  # noqa: E402

from retentive import DarkExperienceReplayModelUpdater, errors  # noqa: E402
from retentive.models import MLP  # noqa: E402
from retentive.state import MANIFEST, load_state  # noqa: E402
from retentive.state.remote import fetch_state, is_url  # noqa: E402

#: Absent from a library without optimistic concurrency: then nothing is caught as a conflict.
StateConflictError = getattr(errors, "StateConflictError", type("NoConflictError", (Exception,), {}))


def build_updater(output: Any, input_state: Any) -> DarkExperienceReplayModelUpdater:
    """DER++ on the MNIST MLP, as tests/support/state_helpers.der builds it (quiet, one epoch, CPU)."""
    torch.manual_seed(0)
    return DarkExperienceReplayModelUpdater(
        MLP(),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.03),
        input_state_folder=input_state,
        output_state_folder=output,
        memory_size=50,
        batch_size=32,
        alpha=0.5,
        beta=0.5,
        seed=0,
        **QUIET_CPU,
        max_epochs=1,
    )


def read_state(location: str, scratch: Path) -> Any:
    """The verified state at ``location``: ``load_state`` locally, ``fetch_state`` then
    ``load_state`` at a URL."""
    if not is_url(location):
        return load_state(location)
    folder = Path(tempfile.mkdtemp(dir=scratch))
    try:
        return load_state(fetch_state(location, folder / "state"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def committed_manifest_sha(location: str, task: str) -> str | None:
    """The sha256 of the manifest now at ``location`` if its last update is ``task`` (best effort:
    ``None`` when another commit has replaced it already, or it cannot be read)."""
    import hashlib

    try:
        if is_url(location):
            from retentive.state.remote.filesystem import open_url

            fs, root = open_url(location)
            pointer = json.loads(fs.cat_file(f"{root}/current.json"))
            raw = fs.cat_file(f"{root}/versions/{pointer['version']}/{MANIFEST}")
        else:
            raw = (Path(location) / MANIFEST).read_bytes()
        manifest = json.loads(raw)
    except Exception:
        return None
    order = manifest.get("task_order") or [None]
    return hashlib.sha256(raw).hexdigest() if order[-1] == task else None


def attempt(location: str, chunk: Any, task: str) -> dict[str, Any]:
    """One build-and-update on ``location``; the updater is dropped on return (a library that
    holds the lock from construction on releases it before the next attempt's build)."""
    record: dict[str, Any] = {"event": "end", "task": task}
    stage = "build"
    try:
        updater = build_updater(location, location)
        stage = "update"
        updater.update(chunk, task_id=task)
        record.update(
            outcome="committed",
            updates_done=updater.updates_done,
            model_fp=fingerprint({k: v.detach().cpu() for k, v in updater.model.state_dict().items()}),
            memory_fp=fingerprint(updater.memory.state_dict()),
            manifest_sha256=committed_manifest_sha(location, task),
        )
    except StateConflictError as error:
        record.update(outcome="conflict", error=error_text(error))
    except errors.StateLockedError as error:
        record.update(outcome="locked", error=error_text(error))
    except Exception as error:
        record.update(outcome="failure", error=error_text(error), false_tamper=is_false_tamper(error))
    record["stage"] = stage
    return record


def write_loop(args: argparse.Namespace, deadline: float, log: Any) -> None:
    from retentive.data.files import read_chunk

    chunk = read_chunk(args.chunk)
    rng = random.Random(args.index)
    number = 0
    while time.time() < deadline:
        task = f"w{args.index}-{number}"
        number += 1
        emit(log, {"event": "start", "task": task, "t": time.time()})
        started = time.perf_counter()
        record = attempt(args.location, chunk, task)
        record["seconds"] = round(time.perf_counter() - started, 4)
        emit(log, record)
        gc.collect()  # the dropped updater's cycles, before the next build
        if record["outcome"] == "locked":
            time.sleep(rng.uniform(0.02, 0.2))  # the holder is mid-update: back off, then retry


def read_loop(args: argparse.Namespace, deadline: float, log: Any) -> None:
    exact = [name for name in args.exact.split(",") if name]
    scratch = Path(tempfile.mkdtemp(prefix="reader-", dir=args.scratch))
    while time.time() < deadline:
        started = time.perf_counter()
        record: dict[str, Any] = {"event": "read"}
        try:
            state = read_state(args.location, scratch)
        except Exception as error:
            record.update(outcome="false_tamper" if is_false_tamper(error) else "error", error=error_text(error))
        else:
            record.update(inspect_read(state, exact))
            record["outcome"] = "mixed" if record["mismatches"] else "ok"
        record["seconds"] = round(time.perf_counter() - started, 4)
        emit(log, record)
    shutil.rmtree(scratch, ignore_errors=True)


def emit(log: Any, record: dict[str, Any]) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["writer", "reader"])
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--location", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--chunk")
    parser.add_argument("--exact", default="")
    parser.add_argument("--scratch", default=tempfile.gettempdir())
    args = parser.parse_args()
    print("ready", flush=True)
    line = sys.stdin.readline().split()
    if len(line) != 2 or line[0] != "go":
        return  # the orchestrator gave up before the start
    deadline = float(line[1])
    with open(args.log, "a", encoding="utf-8") as log:
        (write_loop if args.role == "writer" else read_loop)(args, deadline, log)


if __name__ == "__main__":
    main()
