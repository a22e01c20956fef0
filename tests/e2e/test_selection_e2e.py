"""Every memory policy through real updates and state folders, in this process and a fresh one;
bad input refused before training with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from selection_support import MEMORY, POLICY_NAMES, build, chunks

from retentive import ExperienceReplayModelUpdater
from retentive.memory import (
    ClassBalancedReservoirPolicy,
    GradientDiversityPolicy,
    HerdingPolicy,
    KCenterPolicy,
    ReplayBuffer,
)
from retentive.models import MLP

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parents[1] / "support"


def _memory(folder: Path) -> dict:
    return torch.load(folder / "memory.pt", weights_only=True)


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if torch.is_tensor(a):
        return torch.equal(a, b)
    return a == b


def test_every_policy_round_trips_through_state_folders_in_two_processes(tmp_path):
    first, second = chunks()
    jobs = []
    for name in POLICY_NAMES:
        one, two = tmp_path / f"{name}_1", tmp_path / f"{name}_2"
        build(name, None, one).update(first, task_id=0)
        assert _memory(one)["size"] == MEMORY  # the update-end policies filled it at the end of the update
        build(name, one, two).update(second, task_id=1)
        jobs.append({"name": name, "input": str(one), "output": str(tmp_path / f"{name}_2b")})
        memory = _memory(two)
        assert memory["policy"] == name and memory["size"] == MEMORY
        assert set(memory["storage"]["targets"].tolist()) == {0, 1, 2, 3} or name == "k_center"
        if name in ("class_balanced_reservoir", "ring_buffer", "herding", "forgetting"):
            counts = torch.bincount(memory["storage"]["targets"])
            assert int(counts.max() - counts.min()) <= 1, (name, counts)
        if name != "reservoir":
            assert "policy_state" in memory
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run(
        [sys.executable, str(TESTS_DIR / "selection_worker.py"), str(tmp_path / "jobs.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for job in jobs:
        here, there = _memory(tmp_path / f"{job['name']}_2"), _memory(Path(job["output"]))
        assert _same(here, there), job["name"]  # policy state and storage alike, bit for bit


def test_update_end_memory_replays_only_earlier_chunks(tmp_path):
    first, second = chunks()
    updater = build("herding", None, tmp_path / "one")
    updater.update(first, task_id=0)
    kept = updater.memory.storage["inputs"][:MEMORY].clone()
    seen = updater.memory.seen
    assert seen == len(first)
    # the DER logits of the new rows are the model's at update end, in eval mode
    with torch.no_grad():
        torch.testing.assert_close(updater.memory.storage["logits"][:MEMORY], updater.model(kept))
    updater = build("herding", tmp_path / "one", tmp_path / "two")
    updater.update(second, task_id=1)
    assert updater.memory.seen == len(first) + len(second)
    assert sorted(updater.memory.class_counts().tolist()) == [6, 6, 6, 6]


def _er(policy, tmp_path: Path, model=None, memory_size: int = 5):
    cls = ExperienceReplayModelUpdater
    from functools import partial

    return cls(
        model or MLP(),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.05),
        memory_size=memory_size,
        memory_policy=policy,
        output_state_folder=tmp_path / "out",
        accelerator="cpu",
        logger=False,
        max_epochs=1,
        enable_progress_bar=False,
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: (HerdingPolicy(feature_layers=["features.9"]), None),
            r"feature layers \['features.9'\] are not submodules of MLP",
        ),
        (
            lambda: (KCenterPolicy(feature_layers=["head"]), None),
            r"feature layers \['head'\] are not submodules of MLP",
        ),
        (
            lambda: (GradientDiversityPolicy(), MLP().requires_grad_(False)),
            "needs trainable parameters, but MLP has none",
        ),
        (lambda: (ClassBalancedReservoirPolicy(num_classes=10), None), "memory_size=5 is smaller than the 10 classes"),
    ],
)
def test_bad_input_is_refused_before_training_and_nothing_is_written(make, message, tmp_path):
    policy, model = make()
    with pytest.raises(ValueError, match=message):
        _er(policy, tmp_path, model)
    assert not (tmp_path / "out").exists()


def test_an_unhooked_update_end_policy_refuses_to_leave_a_memory_empty():
    memory = ReplayBuffer(5, policy=HerdingPolicy())  # a memory used outside an updater, never attached
    batch = {
        "inputs": torch.zeros(2, 1, 28, 28),
        "targets": torch.zeros(2, dtype=torch.long),
        "task_ids": torch.zeros(2, dtype=torch.long),
    }
    with pytest.raises(RuntimeError, match="nothing calls its on_update_end"):
        memory.add(batch)


def test_too_many_classes_for_an_unsized_class_balanced_memory_writes_nothing(tmp_path):
    first, second = chunks()
    from retentive.data import TensorChunk

    both = TensorChunk(torch.cat([first.inputs, second.inputs]), torch.cat([first.targets, second.targets]) * 2)
    updater = _er(ClassBalancedReservoirPolicy(), tmp_path, memory_size=3)  # classes unknown up front
    with pytest.raises(ValueError, match="memory_size=3 is smaller than the 4 classes"):
        updater.update(both, task_id=0)
    assert not (tmp_path / "out").exists()
