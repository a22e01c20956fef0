"""Kill test of ``retentive watch``: SIGKILL the service at random moments while chunks arrive;
every good chunk is processed exactly once, in order, the corrupt one quarantined, and the final
state equals an uninterrupted run's bit for bit.

Six chunk files of real MNIST (64 samples each; the fourth a truncated, corrupt ``.npz``) are
dropped into the source one at a time by a thread while the service runs, the next one whenever the
service has done every chunk there (written beside and renamed into place locally; one PUT each at
an ``s3://`` prefix). The service runs as its own process (``python -m retentive.cli watch SOURCE
--home HOME --config ...``) with a tiny MLP and ER. It is SIGKILLed ``--kills`` times and started
again each time; the kills cycle through three moments: uniform over the first 3 seconds after the
new process writes its status (recovery, listing, ledger writes, building, training); right after
an update's commit, before the ledger records it (the service's process kills itself there: the
window a restart must recover from the home's lineage); and uniform over 1.2 times an update's
measured duration after it says it is updating a chunk (reading, building, training, commit,
ledger). After each kill the home must read and verify, and the ledger must list a prefix of the
chunks in name order, each once. After the last kill the service runs until every chunk is recorded
and is then stopped with SIGTERM (exit 143). Finally: the ledger lists the six chunks in order, the
corrupt one quarantined with its error, the others promoted; the serving version's lineage shows
updates 0-4 built from the five good chunks in order, each once; and its weights, memory and
learner files equal those of an uninterrupted ``--once`` run (same sha256).
Run (a few minutes on 2 busy cores)::

    python benchmarks/watch_kill.py --kills 12 --seed 0 --out benchmarks/results/watch_kill.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHUNKS, CORRUPT, PER_CHUNK = 6, 3, 64
CONFIG = """\
updater:
  class_path: retentive.ExperienceReplayModelUpdater
  init_args: {memory_size: 40, batch_size: 16, batch_memory_frac: 0.5}
model:
  class_path: retentive.models.MLP
  init_args: {in_features: 784, hidden: [16], num_classes: 10}
loss_fn: {class_path: torch.nn.CrossEntropyLoss}
optimizer:
  class_path: torch.optim.SGD
  init_args: {lr: 0.1}
trainer: {max_epochs: 2, accelerator: cpu, devices: 1, enable_progress_bar: false}
logger: false
seed: 0
"""


def chunk_files(seed: int = 0) -> list[tuple[str, bytes]]:
    """The six chunk files (name, bytes): real MNIST, 64 samples each; the fourth truncated."""
    import torch

    from retentive.data import TensorChunk, load_mnist_arrays
    from retentive.data.files import write_chunk

    images, labels = load_mnist_arrays("train")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    files = []
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(CHUNKS):
            rows = order[index * PER_CHUNK : (index + 1) * PER_CHUNK]
            path = write_chunk(Path(scratch) / f"day{index}.npz", TensorChunk(images[rows].unsqueeze(1), labels[rows]))
            data = path.read_bytes()
            files.append((path.name, data[: len(data) // 2] if index == CORRUPT else data))
    return files


class Location:
    """A local folder or a URL prefix, written and read the way a producer and a reader would."""

    def __init__(self, where: str) -> None:
        from retentive.state.remote.filesystem import is_url, open_url

        self.where, self.url = where, is_url(where)
        self.fs, self.root = open_url(where) if self.url else (None, where)
        if not self.url:
            Path(where).mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        if self.url:
            self.fs.pipe_file(f"{self.root}/{name}", data)  # one PUT: whole or absent
            return
        hidden = Path(self.root) / f".{name}.part"
        hidden.write_bytes(data)
        os.replace(hidden, Path(self.root) / name)


class Dropper(threading.Thread):
    """Drops the chunk files into the source in name order, ``interval`` seconds apart once released
    (:meth:`release`), whatever the service does: the arrivals are spread over the kills."""

    def __init__(self, source: Location, files: list[tuple[str, bytes]], interval: float) -> None:
        super().__init__(daemon=True)
        self.source, self.files, self.interval = source, files, interval
        self.allowed, self.dropped = 0, 0
        self.changed = threading.Condition()

    def release(self, count: int) -> None:
        with self.changed:
            self.allowed = max(self.allowed, min(count, len(self.files)))
            self.changed.notify()

    def run(self) -> None:
        for index, (name, data) in enumerate(self.files):
            with self.changed:
                self.changed.wait_for(lambda index=index: self.allowed > index)
            time.sleep(self.interval)
            self.source.put(name, data)
            self.dropped += 1


#: a service that SIGKILLs itself right after an update's commit, before the ledger records it
DIE_AFTER_COMMIT = """
import os, signal, sys
from retentive.service.ledger import Ledger
finish = Ledger.finish
def finish_or_die(self, entry):
    if entry.get("outcome") in ("promoted", "challenger") and not entry.get("recovered"):
        os.kill(os.getpid(), signal.SIGKILL)
    finish(self, entry)
Ledger.finish = finish_or_die
from retentive.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _service(
    source: str, home: str, config: Path, log: io.TextIOBase, env: dict[str, str], die_after_commit: bool = False
) -> subprocess.Popen[bytes]:
    program = ["-c", DIE_AFTER_COMMIT] if die_after_commit else ["-m", "retentive.cli"]
    command = [sys.executable, *program, "watch", source, "--home", home, "--config", str(config)]
    command += ["--poll", "0.2", "--settle", "0", "--threads", "1"]
    path = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(command, env={**env, "PYTHONPATH": path}, stdout=log, stderr=subprocess.STDOUT)


def _status(home: str) -> dict[str, Any]:
    from retentive.service.status import read_status

    with contextlib.suppress(Exception):  # mid-write or not written yet
        return read_status(home)
    return {}


def _wait_for(home: str, test: Any, timeout: float, process: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test(_status(home)):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _pid(status: dict[str, Any]) -> int | None:
    return (status.get("service") or {}).get("pid")


def _state(status: dict[str, Any]) -> str | None:
    return (status.get("service") or {}).get("state")


def _updating(status: dict[str, Any]) -> bool:
    return _state(status) == "updating"


def check_home(home: str, names: list[str]) -> str | None:
    """After a kill: the home verifies, the ledger lists a prefix of ``names`` in order, each once."""
    from retentive.service.ledger import Ledger
    from retentive.state.home import ModelHome

    try:
        ledger = Ledger.read(home)
        done = [] if ledger is None else [entry["name"] for entry in ledger["chunks"]]
        if done != names[: len(done)]:
            return f"the ledger lists {done}, not a prefix of {names}"
        current = ModelHome(home).current()
        if current is not None:
            with tempfile.TemporaryDirectory() as scratch:
                ModelHome(home).fetch(Path(scratch) / "v")  # every checksum verified
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def final_problems(home: str, files: list[tuple[str, bytes]], reference: dict[str, str]) -> list[str]:
    """What differs from an uninterrupted run (empty: nothing)."""
    from retentive.data.files import read_chunk_file
    from retentive.service.ledger import Ledger
    from retentive.state.home import ModelHome
    from retentive.state.lineage import chunk_fingerprint, read_lineage

    problems = []
    ledger = Ledger.read(home) or {"chunks": [], "pending": None}
    entries = ledger["chunks"]
    expected = [(name, "quarantined" if i == CORRUPT else "promoted") for i, (name, _) in enumerate(files)]
    if [(e["name"], e["outcome"]) for e in entries] != expected:
        problems.append(f"the ledger records {[(e['name'], e['outcome']) for e in entries]}, expected {expected}")
    if ledger["pending"] is not None:
        problems.append(f"a chunk is still pending: {ledger['pending']}")
    with tempfile.TemporaryDirectory() as scratch:
        fingerprints = []
        for index, (name, data) in enumerate(files):
            if index != CORRUPT:
                (Path(scratch) / name).write_bytes(data)
                fingerprints.append(chunk_fingerprint(read_chunk_file(Path(scratch) / name))["sha256"])
    manifest = ModelHome(home).manifest()
    lineage = read_lineage(manifest)
    chain = [(a.get("update"), a.get("data_sha256")) for a in lineage.ancestors]
    chain.append((lineage.update, (lineage.data or {}).get("sha256")))
    if chain != list(enumerate(fingerprints)):
        problems.append(f"the serving version was built from updates {chain}, expected {list(enumerate(fingerprints))}")
    files_sha = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    if files_sha != reference:
        problems.append(f"the final state differs from the uninterrupted run's: {files_sha} vs {reference}")
    return problems


def reference_run(files: list[tuple[str, bytes]], workdir: Path, config: Path) -> tuple[dict[str, str], list[float]]:
    """An uninterrupted run (in this process, ``--once`` on every chunk): the served files' sha256
    and each update's seconds."""
    from retentive.service import WatchService, WatchSettings, read_status
    from retentive.state.home import ModelHome

    source = Location(str(workdir / "reference-source"))
    for name, data in files:
        source.put(name, data)
    home = str(workdir / "reference-home")
    WatchService(source.where, home, WatchSettings(config), once=True, settle=0, log=lambda line: None).run()
    seconds = [entry["seconds"] for entry in read_status(home)["chunks"] if entry["outcome"] == "promoted"]
    return {name: entry["sha256"] for name, entry in ModelHome(home).manifest()["files"].items()}, seconds


@dataclass
class Run:
    """One kill test's service: where it reads and writes, how it is started, who drops the chunks."""

    source: str
    home: str
    config: Path
    env: dict[str, str]
    log: Any
    dropper: Dropper

    def start(self, die_after_commit: bool = False) -> subprocess.Popen[bytes]:
        return _service(self.source, self.home, self.config, self.log, self.env, die_after_commit)

    def ours(self, status: dict[str, Any], process: subprocess.Popen[bytes]) -> bool:
        """Whether ``status`` was written by ``process`` (not left by a killed one)."""
        return _pid(status) == process.pid

    def all_done(self, status: dict[str, Any]) -> bool:
        """Idle with every chunk let in recorded (nothing left to commit)."""
        return _state(status) == "idle" and len(status.get("chunks", [])) >= self.dropper.allowed

    def more_work(self) -> None:
        """Let one more chunk arrive if every chunk dropped so far is done."""
        done = len(_status(self.home).get("chunks", []))
        self.dropper.release(done + 1)


#: how a kill is timed: a moment after the start, during an update, right after a commit
MODES = ("after start", "after commit", "while updating")


def _kill_once(run: Run, mode: str, rng: random.Random, window: float, update_window: float) -> dict[str, Any]:
    """Start the service, SIGKILL it at a random moment of ``mode``; what it was doing then."""
    process = run.start(die_after_commit=mode == "after commit")
    if mode == "after start":
        run.more_work()  # arrives while the service starts
        if _wait_for(run.home, lambda s: run.ours(s, process), 180, process):
            time.sleep(rng.uniform(0, window))
    elif _wait_for(run.home, lambda s: run.ours(s, process), 180, process):
        run.more_work()  # arrives while the service runs
        if mode == "while updating" and _wait_for(
            run.home, lambda s: run.ours(s, process) and _updating(s), 60, process
        ):
            time.sleep(rng.uniform(0, update_window))
        elif mode == "after commit":  # it kills itself once a commit is done (none: it goes idle)
            _wait_for(run.home, lambda s: run.ours(s, process) and run.all_done(s), 180, process)
    seen = _status(run.home)
    process.kill()
    process.wait()
    service, left = seen.get("service") or {}, _status(run.home).get("pending") or {}
    return {
        "mode": mode,
        "state": service.get("state"),
        "chunk": service.get("chunk"),
        "done": len(seen.get("chunks", [])),
        "left_pending": left.get("name"),  # a chunk begun and not recorded: recovered or redone next
    }


def _finish(run: Run, results: dict[str, Any]) -> None:
    """Start the service once more, let it record every chunk, stop it with SIGTERM (exit 143)."""
    process = run.start()
    results["starts"] += 1

    def idle_and_done(status: dict[str, Any]) -> bool:
        state = (status.get("service") or {}).get("state")
        return run.ours(status, process) and state == "idle" and len(status.get("chunks", [])) == CHUNKS

    if not _wait_for(run.home, idle_and_done, 600, process):
        results["problems"].append("the service did not record every chunk within 600 s (see service.log)")
    process.send_signal(signal.SIGTERM)
    results["sigterm_exit"] = process.wait(timeout=120)
    if results["sigterm_exit"] != 143:
        results["problems"].append(f"SIGTERM ended the service with exit {results['sigterm_exit']}, not 143")


def run_watch_kill_test(
    kills: int,
    seed: int,
    workdir: Path,
    source: str | None = None,
    home: str | None = None,
    env: dict[str, str] | None = None,
    interval: float = 1.0,
    window: float = 3.0,
    update_window: float | None = None,
) -> dict[str, Any]:
    """``kills`` SIGKILLs of a watch service (see the module docstring); ``problems`` lists any violation."""
    rng = random.Random(seed)
    config = workdir / "watch.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    files = chunk_files(seed)
    names = [name for name, _ in files]
    began = time.perf_counter()
    reference, seconds = reference_run(files, workdir, config)
    update_window = update_window or 1.2 * max(seconds)  # an update's time, measured under this load
    source, home = source or str(workdir / "source"), home or str(workdir / "home")
    dropper = Dropper(Location(source), files, interval)
    results: dict[str, Any] = {"kills": [], "problems": [], "starts": 0, "update_window_s": round(update_window, 2)}
    with open(workdir / "service.log", "a", encoding="utf-8") as log:
        run = Run(source, home, config, dict(os.environ if env is None else env), log, dropper)
        dropper.start()
        for kill in range(kills):
            mode = MODES[kill % len(MODES)]
            results["kills"].append(_kill_once(run, mode, rng, window, update_window))
            results["starts"] += 1
            problem = check_home(home, names)
            if problem:
                results["problems"].append(f"kill {kill} ({mode}): {problem}")
        dropper.release(CHUNKS)
        dropper.join()
        _finish(run, results)
    results["problems"] += final_problems(home, files, reference)
    ledger = (_status(home) or {}).get("chunks", [])
    results["recovered_after_commit"] = sum(bool(entry.get("recovered")) for entry in ledger)
    results["wall_s"] = round(time.perf_counter() - began, 1)
    return results


def _local_s3(stack: contextlib.ExitStack) -> tuple[str, str, dict[str, str]]:
    """moto's server on 127.0.0.1 (the tests' one), its credentials in this process's environment:
    a source and a home in its bucket, and the service's environment."""
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from s3_server import forget_s3_clients, s3_server

    server = stack.enter_context(s3_server())
    os.environ.update({k: v for k, v in server.env().items() if k.startswith("AWS_")})
    forget_s3_clients()
    return f"s3://{server.bucket}/watch/incoming", f"s3://{server.bucket}/watch/home", server.env()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds from letting a chunk in to its drop [1]")
    parser.add_argument("--s3", action="store_true", help="source and home on a local S3 server (moto) [local folders]")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="retentive-watch-kill-")))
        source, home, env = _local_s3(stack) if args.s3 else (None, None, None)
        results = run_watch_kill_test(args.kills, args.seed, workdir, source, home, env, args.interval)
    where = {"where": "s3 (moto, 127.0.0.1)" if args.s3 else "local folders", "load_average": os.getloadavg()[0]}
    text = json.dumps({"kills_requested": args.kills, "seed": args.seed, **where, **results}, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0 if not results["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
