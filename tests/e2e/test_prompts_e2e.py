"""The prompt updaters end to end on real MNIST through the public API: two chunks through state
folders, the second in a fresh process; prompts, keys and centers restored bit for bit from
``model.pt`` (read with ``weights_only=True``); the frozen backbone never moves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from prompts_support import CASES, FIRST, build

import retentive

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _model_pt(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pt", weights_only=True)


def _test_loss(model: torch.nn.Module, chunk) -> float:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(model(chunk.inputs), chunk.targets))
    model.train(was_training)
    return loss


@pytest.fixture(scope="module")
def two_chunks(mnist_train, mnist_test, tmp_path_factory):
    from conftest import small_split

    root = tmp_path_factory.mktemp("prompts")
    chunks, tests = small_split(mnist_train, FIRST), small_split(mnist_test, 100)
    losses = {}
    for name in CASES:
        updater = build(name, None, root / name / "s0")
        before = _test_loss(updater.model, tests[0])
        losses[name] = (before, _test_loss(updater.update(chunks[0], task_id="first_task"), tests[0]))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "support"), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "prompts_support.py"), str(root)], check=True, env=env
    )
    return root, losses, tests


@pytest.mark.parametrize("name", sorted(CASES))
def test_second_process_restores_the_state_bit_for_bit(two_chunks, name):
    root, losses, _ = two_chunks
    saved, restored = _model_pt(root / name / "s1"), torch.load(root / name / "restored.pt", weights_only=True)
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[k], restored[k]) for k in saved)
    manifest = retentive.state.load_state(root / name / "s1").manifest
    assert manifest["task_order"] == ["first_task", "second_task"] and manifest["updater"] == name
    # the first update learned: the held-out loss on its digits fell by 30% at least (10 steps on a random ViT)
    before, after = losses[name]
    assert after < 0.7 * before, f"{name}: held-out loss {before:.3f} before the first update, {after:.3f} after"


@pytest.mark.parametrize("name", ["LearningToPromptModelUpdater", "LearningToPromptReplayModelUpdater"])
def test_l2p_learns_prompts_and_keys_and_keeps_the_backbone(two_chunks, name):
    root = two_chunks[0]
    s0, s1 = _model_pt(root / name / "s0"), _model_pt(root / name / "s1")
    assert not torch.equal(s0["prompt_pool"], s1["prompt_pool"]) and not torch.equal(
        s0["prompt_keys"], s1["prompt_keys"]
    )
    assert s1["prompt_pool"].shape == (10, 5, 32) and s1["prompt_keys"].shape == (10, 32)  # Renate's pool defaults
    frozen = [k for k in s0 if k.startswith("transformer.")]
    assert frozen and all(torch.equal(s0[k], s1[k]) for k in frozen)


def test_l2p_replay_and_rd_memories(two_chunks):
    root = two_chunks[0]
    for name in ("LearningToPromptReplayModelUpdater", "RepeatedDistillationModelUpdater"):
        memory = retentive.state.load_state(root / name / "s1").memory
        stored = set(memory["storage"]["targets"][: memory["size"]].tolist())
        assert memory["size"] == 40 and stored & {0, 1} and stored & {2, 3}, (name, stored)
    # Repeated Distillation's step 4: every stored logit is the consolidated model's
    memory = retentive.state.load_state(root / "RepeatedDistillationModelUpdater" / "s1").memory
    model = retentive.load_model(
        CASES["RepeatedDistillationModelUpdater"][0](), root / "RepeatedDistillationModelUpdater" / "s1"
    )
    with torch.no_grad():
        logits = model(memory["storage"]["inputs"][:40])
    torch.testing.assert_close(memory["storage"]["logits"][:40], logits, rtol=1e-4, atol=1e-4)


def test_sprompts_one_prompt_and_k_centers_per_update_and_task_routing(two_chunks):
    root, _, tests = two_chunks
    name = "SPeftModelUpdater"
    s0, s1 = _model_pt(root / name / "s0"), _model_pt(root / name / "s1")
    assert [k for k in s0 if k.startswith("prompts.")] == ["prompts.0"]
    assert [k for k in s1 if k.startswith("prompts.")] == ["prompts.0", "prompts.1"]
    assert torch.equal(s0["prompts.0"], s1["prompts.0"])  # the first task's prompt is frozen
    assert s1["centers"].shape == (6, 32) and s1["center_tasks"].tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(s0["centers"], s1["centers"][:3])
    model = retentive.load_model(CASES[name][0](), root / name / "s1")
    guesses = [float((model.infer_task(t.inputs) == i).float().mean()) for i, t in enumerate(tests[:2])]
    assert min(guesses) > 0.7, f"k-means task identification on held-out digits: {guesses}"
