"""Deep generative replay: replay labelled by the previous classifier and mixed at the stated
ratio, no real input anywhere in the state folder, consolidation, and the bad inputs."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from retentive import DataError, GenerativeReplayModelUpdater, VariationalAutoencoder
from retentive.data import load_mnist, split_mnist
from retentive.memory import GenerativeMemory
from retentive.models import MLP
from retentive.state import load_state
from retentive.streams import Purpose
from retentive.updaters.generative import replay_count

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)


@pytest.fixture(scope="module")
def chunks():
    return [c.subset(torch.arange(120)) for c in split_mnist(load_mnist("train"))[:2]]


def make(tmp: Path, name: str, previous: Path | None = None, **kwargs) -> GenerativeReplayModelUpdater:
    torch.manual_seed(0)
    generator = VariationalAutoencoder((1, 28, 28), latent_dim=8, hidden=(64,))
    return GenerativeReplayModelUpdater(
        MLP(hidden=(32,)),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        generator=generator,
        batch_size=12,
        input_state_folder=previous,
        output_state_folder=tmp / name,
        **{**QUIET, **kwargs},
    )


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


def test_consolidation_takes_replay_only_steps(tmp_path, chunks):
    plain = make(tmp_path, "a", consolidation_steps=0).update(chunks[0])
    consolidated = make(tmp_path, "b", consolidation_steps=5, consolidation_batch_size=8).update(chunks[0])
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), consolidated.state_dict().values()))


def test_sleep_trains_on_the_pair_that_ended_the_update_and_the_next_update_replays_the_slept_pair(tmp_path, chunks):
    """The sleep after update 1 learns, with the plain task loss, samples of the generator as update
    1 left it, labelled by the classifier as update 1 ended - not by the pair frozen when update 0
    ended, which update 1 itself replayed. The pair frozen for update 2 is that generator and the
    slept classifier. The classifier that ends update 1 is made by hand to call everything a 3."""
    settings = dict(consolidation_steps=3, consolidation_batch_size=16)
    make(tmp_path, "s0", **settings).update(chunks[0])
    updater = make(tmp_path, "s1", tmp_path / "s0", **settings)
    replayed_during_update = {k: v.clone() for k, v in updater.memory.previous_solver.state_dict().items()}
    steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    ended: dict[str, dict[str, torch.Tensor]] = {}
    loss_fn, consolidate = updater.learner.loss_fn, updater._consolidate

    class Recording(torch.nn.Module):
        def forward(self, logits, targets):
            value = loss_fn(logits, targets)
            steps.append((logits.detach().clone(), targets.clone(), value.detach()))
            return value

    def sleeping() -> None:
        head = [m for m in updater.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            head.bias[3] += 20.0  # the classifier as the update ended: class 3 for any input
        ended["model"] = {k: v.clone() for k, v in updater.model.state_dict().items()}
        ended["generator"] = {k: v.clone() for k, v in updater.memory.generator.state_dict().items()}
        updater.learner.loss_fn = Recording()
        try:
            consolidate()
        finally:
            updater.learner.loss_fn = loss_fn

    updater._consolidate = sleeping  # type: ignore[method-assign]
    updater.update(chunks[1])
    assert len(steps) == 3
    for logits, targets, value in steps:
        assert torch.equal(targets, torch.full((16,), 3)), "labelled by the classifier that ended the update"
        assert float(value) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, targets)), rel=1e-6)
    before, generator = MLP(hidden=(32,)), VariationalAutoencoder((1, 28, 28), latent_dim=8, hidden=(64,))
    before.load_state_dict(replayed_during_update)
    generator.load_state_dict(ended["generator"])
    # the first draw, redrawn by hand from the sleep's own stream and the generator as the update ended
    sequence = np.random.SeedSequence(0, spawn_key=(1, int(Purpose.COMPONENTS), 1))
    inputs = generator.sample_inputs(
        16, torch.Generator().manual_seed(int(sequence.generate_state(1, np.uint64)[0]) >> 1)
    )
    teacher = MLP(hidden=(32,))
    teacher.load_state_dict(ended["model"])
    with torch.no_grad():
        assert torch.allclose(steps[0][0], teacher(inputs), atol=1e-5), "the generator that ended the update"
        assert not bool((before(inputs).argmax(1) == 3).all()), "the pair update 1 replayed labels otherwise"
    # what update 2 replays: the generator that slept and the classifier after sleeping
    memory = updater.memory
    for a, b in zip(memory.previous_generator.state_dict().values(), ended["generator"].values()):
        assert torch.equal(a, b)
    for a, b in zip(memory.previous_solver.state_dict().values(), updater.model.state_dict().values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, ended["model"][k]) for k, a in updater.model.state_dict().items()), "it slept"


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
