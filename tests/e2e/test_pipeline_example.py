"""The README's pipeline example runs as written: five `retentive update` processes, chained."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from retentive.state import load_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "bash examples/split_mnist_pipeline.sh"


def readme_command() -> list[str]:
    """The pipeline command exactly as the README shows it (without its trailing comment)."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(SCRIPT)]
    assert len(lines) == 1, f"the README should show `{SCRIPT}` once, found {lines}"
    return shlex.split(lines[0], comments=True)


def test_readme_pipeline_runs_as_written(tmp_path):
    output = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = readme_command() + ["--output", str(output), "--limit", "64"]  # small chunks: a fast test
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr

    # five updates, each resuming from the one before
    for index in range(5):
        manifest = load_state(output / "state" / f"chunk_{index}").manifest
        assert manifest["updater"] == "DarkExperienceReplayModelUpdater"
        assert manifest["updates_done"] == index + 1
        assert manifest["tasks_seen"] == {str(t): 64 for t in range(index + 1)}
        summary = json.loads((output / "summaries" / f"chunk_{index}.json").read_text())
        assert summary["output_state"] == str(output / "state" / f"chunk_{index}")
        assert 0.0 <= summary["val_accuracy"] <= 1.0
    assert len(re.findall(r"retentive update: DarkExperienceReplayModelUpdater, update \d", result.stdout)) == 5

    # the logs open where the README says: one TensorBoard run per update, with validation accuracy
    readme = (ROOT / "README.md").read_text()
    assert "tensorboard --logdir pipeline_output/tensorboard" in readme
    assert f"tensorboard --logdir {output / 'tensorboard'}" in result.stdout
    runs = sorted(p.name for p in (output / "tensorboard" / "der").iterdir())
    assert runs == [f"chunk_{i}" for i in range(5)]
    events = EventAccumulator(str(output / "tensorboard" / "der" / "chunk_4")).Reload()
    assert "val/accuracy" in events.Tags()["scalars"]

    # a second run into the same folder is refused before anything runs (usage error)
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "holds an earlier run" in again.stderr
