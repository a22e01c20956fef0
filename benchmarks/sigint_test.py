"""SIGINT test: a real Ctrl-C at a random moment of `retentive update` (in place), and the exit code
must tell the truth.

Each trial starts ``retentive update --input-state S --output-state S`` (DER++ on an MNIST MLP,
the default TensorBoard logger) in a new process and sends it SIGINT at a moment drawn uniformly
from the time a clean run takes from taking the folder's lock to exiting (training, the save, the
commit, the report, the interpreter's exit). Afterwards:

* exit 130 (one line on stderr) must leave S byte-identical;
* exit 0 must leave S holding the new state (updates_done 2) and the old one kept for rollback;
* no process may hang, and nothing (staging folder, lock file) may be left beside S.

Anything else is counted as ``mismatch`` or ``other`` (both must be 0). Run (about 15 s a trial on
2 cores):

    python benchmarks/sigint_test.py --trials 30
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _prepare(work: Path) -> None:
    """The state after a first update (the config's model, memory 50), and a chunk of 1000 digits."""
    import torch
    from quiet_cpu import QUIET_CPU

    from retentive import DarkExperienceReplayModelUpdater
    from retentive.data import load_mnist, split_mnist
    from retentive.data.files import write_chunk
    from retentive.models import MLP

    torch.set_num_threads(1)
    chunks = split_mnist(load_mnist("train"))
    updater = DarkExperienceReplayModelUpdater(
        MLP(),
        torch.nn.CrossEntropyLoss(),
        lambda p: torch.optim.SGD(p, lr=0.1),
        memory_size=50,
        batch_size=64,
        output_state_folder=work / "state",
        **QUIET_CPU,
        max_epochs=1,
    )
    updater.update(chunks[0].subset(torch.arange(200)), task_id=0)
    write_chunk(work / "chunk.npz", chunks[1].subset(torch.arange(1000)))


def run(trials: int, seed: int, work: Path, log: Any = print) -> dict[str, Any]:
    _prepare(work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    folder, lock = work / "s", work / ".retentive-lock-s"
    command = [
        sys.executable,
        "-m",
        "retentive.cli",
        "update",
        "--config",
        str(ROOT / "configs" / "der.yaml"),
        "--data",
        str(work / "chunk.npz"),
        "--input-state",
        str(folder),
        "--output-state",
        str(folder),
        "--threads",
        "1",
        "--set",
        "trainer.max_epochs=6",
        "--set",
        "updater.init_args.memory_size=50",
    ]

    def fresh() -> dict[str, str]:
        for path in work.glob(".retentive-*"):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(work / "state", folder)
        return _digest(folder)

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            command,
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # noqa: PLW1509

    old = fresh()
    process = start()
    while not lock.exists():
        time.sleep(0.005)
    begun = time.monotonic()
    process.communicate()
    window = time.monotonic() - begun
    log(f"clean run: {window:.2f} s from taking the lock to exiting")
    rng = random.Random(seed)
    counts: dict[str, Any] = {
        "trials": trials,
        "exit_130_unchanged": 0,
        "exit_0_committed": 0,
        "mismatch": 0,
        "other": 0,
        "debris": 0,
        "window_s": round(window, 2),
        "problems": [],
    }
    for trial in range(trials):
        fresh()
        process = start()
        while not lock.exists():
            time.sleep(0.005)
        time.sleep(rng.uniform(0, window))
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            counts["other"] += 1
            counts["problems"].append(f"trial {trial}: hung after SIGINT")
            continue
        updates = json.loads((folder / "manifest.json").read_text())["updates_done"]
        previous = work / ".retentive-previous-s"
        debris = [p.name for p in work.glob(".retentive-*") if p != previous]
        counts["debris"] += bool(debris)
        lines = err.strip().splitlines()
        if process.returncode == 130 and _digest(folder) == old and len(lines) == 1:
            counts["exit_130_unchanged"] += 1
        elif process.returncode == 0 and updates == 2 and previous.is_dir() and _digest(previous) == old:
            counts["exit_0_committed"] += 1
        else:
            counts["mismatch" if process.returncode in (0, 130) else "other"] += 1
            counts["problems"].append(
                f"trial {trial}: exit {process.returncode}, updates_done {updates}: {err[-300:]!r}"
            )
        log(f"trial {trial:2d}: exit {process.returncode}, updates_done {updates}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="retentive-sigint-") as work:
        counts = run(args.trials, args.seed, Path(work))
    print(json.dumps(counts, indent=2))
    return 0 if not (counts["mismatch"] or counts["other"] or counts["debris"]) else 1


if __name__ == "__main__":
    sys.exit(main())
