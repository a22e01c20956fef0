"""Every Seq-CIFAR-10 config (configs/seq-cifar10/) through ``retentive update``: chunk 0 in one
process, chunk 1 in another resuming from the state folder the first wrote, on real CIFAR-10
images (the shared copy, JPEG re-encoded at quality ~75) stored as uint8 chunk files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from cifar_support import sample_folders

from retentive.data import image_folder, seq_cifar10
from retentive.state import load_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "seq-cifar10").glob("*.yaml"))
#: small enough for a CPU test: one epoch of a narrow ResNet-18 (the configs' schedule is the paper's)
QUICK = ["--set", "trainer.max_epochs=1", "--set", "model.init_args.nf=4", "--set", "logger=false"]


def _batch(jobs: list[list[str]], cwd: Path) -> list[dict]:
    """The ``retentive update`` commands ``jobs`` one after another in one new Python process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as scratch:
        requests, results = Path(scratch) / "jobs.json", Path(scratch) / "results.json"
        requests.write_text(json.dumps([{"args": args, "cwd": str(cwd)} for args in jobs]))
        worker = ROOT / "tests" / "support" / "update_batch_worker.py"
        done = subprocess.run([sys.executable, str(worker), str(requests), str(results)], env=env, timeout=900)
        assert done.returncode == 0
        return json.loads(results.read_text())


def test_the_configs_are_one_per_method():
    assert [p.stem for p in CONFIGS] == ["der", "derpp", "er", "fine_tuning", "joint"]


def test_every_config_updates_twice_in_two_processes(tmp_path):
    sample = sample_folders(tmp_path / "sample", per_class=16, test_per_class=1)
    chunks = seq_cifar10(image_folder(sample / "train", cache=False))
    for index in (0, 1):  # uint8 images, as cifar10() gives them: the chunk reader scales them to [0, 1]
        torch.save({"inputs": chunks[index].inputs, "targets": chunks[index].targets}, tmp_path / f"chunk_{index}.pt")
    states = {p.stem: (tmp_path / p.stem / "state_0", tmp_path / p.stem / "state_1") for p in CONFIGS}
    first = [
        ["--config", str(p), "--data", str(tmp_path / "chunk_0.pt"), "--output-state", str(states[p.stem][0]), *QUICK]
        for p in CONFIGS
    ]
    second = [
        ["--config", str(p), "--data", str(tmp_path / "chunk_1.pt"), "--input-state", str(states[p.stem][0])]
        + ["--output-state", str(states[p.stem][1]), *QUICK]
        for p in CONFIGS
    ]
    for result in _batch(first, tmp_path) + _batch(second, tmp_path):
        assert result["returncode"] == 0, result["stderr"][-2000:]
    for name, (_, last) in states.items():
        state = load_state(last)
        assert state.manifest["updates_done"] == 2 and state.manifest["tasks_seen"] == {"0": 32, "1": 32}, name
        if state.manifest["memory"]["size"]:  # replay remembers both chunks' classes
            stored = state.memory["storage"]
            assert set(stored["targets"].tolist()) & {0, 1} and set(stored["targets"].tolist()) & {2, 3}, name
