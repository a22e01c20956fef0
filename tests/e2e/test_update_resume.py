"""`retentive update --resume`: a run killed mid-way continues from its last epoch and ends identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from retentive.data.files import write_chunk
from retentive.state import load_state
from retentive.state.resume import checkpoint_root, has_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# --from-scratch: the output is a first chunk written beside another first chunk ("clean")
ARGS = [
    "--config",
    ROOT / "configs" / "er.yaml",
    "--threads",
    "1",
    "--set",
    "trainer.max_epochs=6",
    "--set",
    "logger=false",
    "--from-scratch",
]


def _command(data: Path, output: Path, *extra: object) -> list[str]:
    return [
        sys.executable,
        "-m",
        "retentive.cli",
        "update",
        *map(str, ARGS),
        "--data",
        str(data),
        "--output-state",
        str(output),
        *map(str, extra),
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def test_killed_update_resumes_from_its_checkpoint(split_small, tmp_path):
    train, _ = split_small
    data = tmp_path / "chunk.npz"
    write_chunk(data, train[0])
    clean = tmp_path / "clean"
    subprocess.run(_command(data, clean), check=True, env=_env(), capture_output=True, timeout=300)

    output = tmp_path / "resumed"
    worker = subprocess.Popen(
        _command(data, output, "--resume"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while (
        not (checkpoint_root(output) / "epoch-0001").exists() and worker.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.005)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert worker.returncode == -signal.SIGKILL, "the update finished before it could be interrupted"
    assert not output.exists() and has_checkpoint(output)

    finished = subprocess.run(
        _command(data, output, "--resume"), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert not has_checkpoint(output)
    a, b = load_state(output), load_state(clean)
    for key, value in b.model.items():
        assert torch.equal(a.model[key], value), key
    for key, value in b.memory["storage"].items():
        assert torch.equal(a.memory["storage"][key], value), key
    assert a.learner["learner"]["total_steps"] == b.learner["learner"]["total_steps"]
