"""Deep generative replay: replay labelled by the previous classifier (no target transform on its
labels) and mixed at the stated ratio, no real input anywhere in the state folder, and the bad
inputs. The sleep (``consolidation_steps``) is in test_generative_sleep.py."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from generative_support import QUIET, make, two_chunks

from retentive import DataError, ExperienceReplayModelUpdater, GenerativeReplayModelUpdater, VariationalAutoencoder
from retentive.memory import GenerativeMemory
from retentive.models import MLP
from retentive.state import load_state
from retentive.updaters.generative import replay_count


@pytest.fixture(scope="module")
def chunks():
    return two_chunks()


def test_replay_count_makes_the_stated_share():
    assert replay_count(12, 0.5) == 12 and replay_count(12, 0.25) == 4 and replay_count(10, 0.0) == 0
    assert all(
        abs(replay_count(n, r) / (n + replay_count(n, r)) - r) < 0.5 / (n + replay_count(n, r)) + 1e-9
        for n in (10, 32)
        for r in (0.2, 0.5, 0.75)
    )


def test_replay_is_labelled_by_the_previous_classifier_at_the_stated_ratio(tmp_path, chunks):
    make(tmp_path, "s0").update(chunks[0])
    updater = make(tmp_path, "s1", tmp_path / "s0", replay_ratio=0.25)
    first = load_state(tmp_path / "s0")
    seen: list[tuple[int, int]] = []
    replay = updater.replay
    original = replay.loss

    def recording(ctx):
        term = original(ctx)
        seen.append((int(ctx.targets.shape[0]), int(ctx.memory.targets.shape[0])))
        # the labels are the previous classifier's (the model as the first update saved it)
        solver = MLP(hidden=(32,))
        solver.load_state_dict(first.model)
        with torch.no_grad():
            assert torch.equal(solver(ctx.memory.inputs).argmax(1), ctx.memory.targets)
        # replayed through the Learner's one forward pass, like any memory's samples
        assert ctx.memory_outputs is not None and ctx.memory_outputs.shape[0] == ctx.memory.targets.shape[0]
        seen_inputs.append(ctx.memory.inputs)
        return term

    seen_inputs: list[torch.Tensor] = []
    replay.loss = recording  # type: ignore[method-assign]
    updater.update(chunks[1])
    assert seen and all(k == 4 for n, k in seen if n == 12), "12 new + 4 replayed: a replayed share of 0.25"
    assert replay.weight == pytest.approx(0.25 / 0.75)
    assert seen_inputs[-1].shape[1:] == (1, 28, 28) and float(seen_inputs[-1].min()) >= 0


def _shift(targets: torch.Tensor) -> torch.Tensor:
    return (targets + 1) % 10


def _halve(inputs: torch.Tensor) -> torch.Tensor:
    return inputs * 0.5


def test_generated_replay_gets_the_buffer_transform_but_its_labels_no_target_transform(tmp_path, chunks):
    """Generated labels are the previous classifier's predictions, in the label space the model
    trains in already: a buffer target transform would map them a second time. The generated
    inputs are raw, like stored ones, and get the buffer transform. Stored replay, whose targets
    are raw, still gets both."""
    make(tmp_path, "s0").update(chunks[0])
    solver = MLP(hidden=(32,))
    solver.load_state_dict(load_state(tmp_path / "s0").model)
    transforms = dict(buffer_transform=_halve, buffer_target_transform=_shift)
    updater = make(tmp_path, "s1", tmp_path / "s0", **transforms)
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    original = updater.replay.loss

    def recording(ctx):
        seen.append((ctx.memory.inputs, ctx.memory_inputs, ctx.memory.targets))
        return original(ctx)

    updater.replay.loss = recording  # type: ignore[method-assign]
    updater.update(chunks[1])
    assert seen
    for raw, transformed, targets in seen:
        assert torch.equal(transformed, raw * 0.5), "the buffer transform"
        with torch.no_grad():
            assert torch.equal(solver(raw).argmax(1), targets), "the classifier's labels, not shifted"
    # a sample memory stores raw targets: its replay gets the buffer target transform
    er = ExperienceReplayModelUpdater(
        MLP(hidden=(32,)), torch.nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), 40, **transforms, **QUIET
    )
    stored: list[tuple[torch.Tensor, torch.Tensor]] = []
    replay = er.learner.components[0]
    original_er = replay.loss

    def recording_er(ctx):
        if ctx.memory is not None:
            stored.append((ctx.memory.targets, er.memory.gather(ctx.memory.indices).targets))
        return original_er(ctx)

    replay.loss = recording_er  # type: ignore[method-assign]
    er.update(chunks[0])
    assert stored and all(torch.equal(replayed, _shift(raw)) for replayed, raw in stored)


def test_the_generative_memory_is_the_updaters_replay_memory_and_learns_what_it_is_offered(tmp_path, chunks):
    updater = make(tmp_path, "s0")
    assert isinstance(updater.memory, GenerativeMemory) and updater.learner.memory is updater.memory
    assert updater.memory.sample(4) is None, "nothing to replay before an update ends"
    before = {k: v.clone() for k, v in updater.memory.generator.state_dict().items()}
    updater.update(chunks[0])
    memory = updater.memory
    assert memory.seen == 120 and len(memory) == 0 and memory.keys == ()
    assert any(not torch.equal(before[k], v) for k, v in memory.generator.state_dict().items()), "add trains it"
    # the update's end froze the trained generator and classifier as the source of the next replay
    drawn = memory.sample(5)
    assert drawn is not None and drawn.inputs.shape == (5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(updater.model(drawn.inputs).argmax(1), drawn.targets)


def test_no_real_input_is_in_the_state_folder(tmp_path, chunks):
    make(tmp_path, "s0").update(chunks[0])
    make(tmp_path, "s1", tmp_path / "s0").update(chunks[1])
    state = load_state(tmp_path / "s1")
    assert state.manifest["memory"]["size"] == 0 and not state.memory.get("storage")
    real = torch.cat([c.inputs for c in chunks]).flatten(1)
    tensors: list[torch.Tensor] = []

    def collect(value):
        if torch.is_tensor(value):
            tensors.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)

    collect([state.model, state.learner, state.memory])
    assert any(t.numel() > 10_000 for t in tensors), "the generator's weights are saved"
    for t in tensors:
        if t.is_floating_point() and t.numel() % 784 == 0 and t.numel():
            rows = t.reshape(-1, 784).float()
            assert not (torch.cdist(rows, real) < 1e-6).any(), "a real input is stored"
    # a new process restores the generator: the same updater built from the folder samples alike
    again = make(tmp_path, "s2", tmp_path / "s1")
    assert torch.equal(
        again.memory.generator.sample_inputs(3, torch.Generator().manual_seed(1)),
        make(tmp_path, "s3", tmp_path / "s1").memory.generator.sample_inputs(3, torch.Generator().manual_seed(1)),
    )
    # and the replay it draws: the frozen generator, classifier and replay stream come back too
    drawn, redrawn = again.memory.sample(3), make(tmp_path, "s4", tmp_path / "s1").memory.sample(3)
    assert drawn is not None and redrawn is not None
    assert torch.equal(drawn.inputs, redrawn.inputs) and torch.equal(drawn.targets, redrawn.targets)


def test_bad_generative_inputs_are_refused_and_nothing_is_written(tmp_path, chunks):
    torch.manual_seed(0)
    updater = GenerativeReplayModelUpdater(
        MLP(hidden=(32,)),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        generator=VariationalAutoencoder((3, 32, 32)),
        output_state_folder=tmp_path / "s",
        **QUIET,
    )
    with pytest.raises(
        DataError,
        match=r"the generator models inputs of shape \(3, 32, 32\) but the training inputs have shape \(1, 28, 28\)",
    ):
        updater.update(chunks[0])
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="stores no real sample; memory_size must be 0"):
        GenerativeReplayModelUpdater(
            MLP(), torch.nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), memory_size=10, **QUIET
        )
    with pytest.raises(ValueError, match=r"replay_ratio must lie in \[0, 1\), got 1.0"):
        GenerativeReplayModelUpdater(
            MLP(), torch.nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), replay_ratio=1.0, **QUIET
        )


def test_a_folder_written_when_the_generator_was_a_component_still_loads(tmp_path, chunks):
    """Folders written before the generator became the memory kept it in a ``GenerativeReplay``
    component beside a capacity-0 sample memory; they load as the same generator and replay."""
    from dataclasses import replace

    from retentive.memory import ReplayBuffer

    make(tmp_path, "s0").update(chunks[0])
    new = load_state(tmp_path / "s0")
    weights = {f"memory.generator.{k}": v for k, v in new.memory["generator"].items()}
    stale = {f"memory.previous_generator.{k}": torch.zeros_like(v) for k, v in new.memory["generator"].items()}
    component = {
        "snapshot_update": torch.tensor(0),
        "updates_trained": torch.tensor(1),
        "memory.has_previous": torch.tensor(False),
        **weights,
        **stale,
        **{f"memory.previous_solver.{k}": torch.zeros_like(v) for k, v in new.model.items()},
    }
    sample_memory = ReplayBuffer(0)
    sample_memory.seen = int(new.memory["seen"])
    learner = {**new.learner["learner"], "component_types": ["GenerativeReplay"], "components": [component]}
    old = replace(new, learner={**new.learner, "learner": learner}, memory=sample_memory.state_dict())
    updater, reference = make(tmp_path, "a"), make(tmp_path, "b", tmp_path / "s0")
    updater._apply_state(old, tmp_path / "s0")
    assert updater.memory.seen == 120 and updater.memory.has_previous
    for a, b in zip(updater.memory.generator.state_dict().values(), reference.memory.generator.state_dict().values()):
        assert torch.equal(a, b)
    drawn, expected = updater.memory.sample(4), reference.memory.sample(4)
    assert drawn is not None and expected is not None
    assert torch.equal(drawn.inputs, expected.inputs) and torch.equal(drawn.targets, expected.targets)
