"""The README's main job: the demo, each chunk in its own process, resuming from state folders."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from retentive.state import load_state

pytestmark = pytest.mark.slow


def test_demo_runs_five_processes_through_state_folders(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "retentive.cli", "demo", "--output", str(out), "--samples-per-chunk", "400"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "average_accuracy" in result.stdout and "forgetting" in result.stdout
    final = load_state(out / "state" / "chunk_004")
    assert final.manifest["updates_done"] == 5
    assert final.manifest["tasks_seen"] == {str(i): 400 for i in range(5)}
    assert final.memory["size"] == 500 and set(final.memory["storage"]) == {"inputs", "targets", "task_ids", "logits"}
    # the memory holds every chunk's digits, and the last row was measured on all ten
    assert sorted(final.memory["storage"]["targets"].unique().tolist()) == list(range(10))
    row = json.loads((out / "row_004.json").read_text())["row"]
    # the first digits survive four later chunks (fine-tuning leaves them at 0) and the last are learnt
    assert len(row) == 5 and row[0] > 0.3 and row[4] > 0.5
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    # a second run refuses to mix with the first
    again = subprocess.run(
        [sys.executable, "-m", "retentive.cli", "demo", "--output", str(out)], capture_output=True, text=True
    )
    assert again.returncode == 2 and "earlier run" in again.stderr
