"""The README's main job: the demo, each chunk in its own process, resuming from state folders."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from side_by_side import side_by_side

from retentive.memory.identity import IDENTITY_KEYS
from retentive.state import load_state

pytestmark = pytest.mark.slow

DEMO = [sys.executable, "-m", "retentive.cli", "demo"]
#: each demo's options after ``--output``, its time limit in seconds, and the test that checks it
DEMOS = {
    "mnist": (["--samples-per-chunk", "400"], 300, "test_demo_runs_five_processes_through_state_folders"),
    "cifar10": (
        ["--dataset", "cifar10", "--samples-per-chunk", "48", "--test-per-chunk", "20", "--nf", "4"]
        + ["--memory-size", "100"],
        600,
        "test_cifar10_demo_runs_seq_cifar10_through_state_folders",
    ),
}


@pytest.fixture(scope="module")
def demos(request, tmp_path_factory):
    """The selected tests' demos, started together (tests/support/side_by_side.py): ``{name:
    (output folder, future of the finished process)}``. The demos are single-threaded and seeded,
    so running them side by side changes no figure."""
    outputs = {name: tmp_path_factory.mktemp(name) / "demo" for name in DEMOS}

    def job(name: str):
        options, timeout, _ = DEMOS[name]
        command = [*DEMO, "--output", str(outputs[name]), *options]
        return lambda: subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    jobs = {name: (job(name), (test,)) for name, (_, _, test) in DEMOS.items()}
    with side_by_side(request, jobs) as futures:
        yield {name: (outputs[name], future) for name, future in futures.items()}


def test_demo_runs_five_processes_through_state_folders(demos):
    out, running = demos["mnist"]
    result = running.result()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "average_accuracy" in result.stdout and "forgetting" in result.stdout
    final = load_state(out / "state" / "chunk_004")
    assert final.manifest["updates_done"] == 5
    assert final.manifest["tasks_seen"] == {str(i): 400 for i in range(5)}
    assert final.memory["size"] == 500 and set(final.memory["storage"]) == {
        "inputs",
        "targets",
        "task_ids",
        "logits",
        *IDENTITY_KEYS,
    }
    # the memory holds every chunk's digits, and the last row was measured on all ten
    assert sorted(final.memory["storage"]["targets"].unique().tolist()) == list(range(10))
    row = json.loads((out / "row_004.json").read_text())["row"]
    # the first digits survive four later chunks (fine-tuning leaves them at 0) and the last are learnt
    assert len(row) == 5 and row[0] > 0.3 and row[4] > 0.5
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    # a second run refuses to mix with the first
    again = subprocess.run([*DEMO, "--output", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "earlier run" in again.stderr


def test_cifar10_demo_runs_seq_cifar10_through_state_folders(demos):
    """Seq-CIFAR-10 on the shared copy (JPEG re-encoded, quality ~75): uint8 images all the way
    into the memory, the class pairs named, a narrow ResNet-18."""
    out, running = demos["cifar10"]
    result = running.result()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "chunk 0 (airplane and automobile)" in result.stdout and "chunk 4 (ship and truck)" in result.stdout
    assert "test images after each update" in result.stdout and "average_accuracy" in result.stdout
    final = load_state(out / "state" / "chunk_004")
    assert final.manifest["updates_done"] == 5 and final.manifest["tasks_seen"] == {str(i): 48 for i in range(5)}
    stored = final.memory["storage"]
    assert final.memory["size"] == 100 and stored["inputs"].dtype == torch.uint8
    assert stored["inputs"].shape[1:] == (3, 32, 32) and len(set(stored["targets"].tolist())) >= 8
    rows = [json.loads((out / f"row_{i:03d}.json").read_text())["row"] for i in range(5)]
    assert all(len(row) == 5 and all(0 <= a <= 1 for a in row) for row in rows)
