"""Contract v2 end to end: third-party components with gradient hooks and per-parameter state,
per-sample losses, transforms, the host-sync-free step, growing models, captured arguments and
update-end memory work."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from third_party import GradientMomentumProjection, build, chunks
from torch import nn

import retentive as R
from retentive.components.base import Component, StepContext
from retentive.data import TensorChunk
from retentive.data.transforms import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    cifar10_test_transform,
    cifar10_train_transform,
)
from retentive.errors import DataError
from retentive.models import MLP, ResNet18, SmallCNN
from retentive.state import load_state

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1] / "support"
QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)


def _sgd(lr: float = 0.1):
    return partial(torch.optim.SGD, lr=lr)


# ---------------------------------------------------------------- a third-party component
def _payloads(folder: Path) -> dict:
    state = load_state(folder)
    return {"model": state.model, "learner": state.learner, "memory": state.memory}


def _assert_same(a, b, path="") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            _assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    elif torch.is_tensor(a):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    else:
        assert a == b, path


def test_third_party_gradient_component_through_two_processes_is_bit_identical(tmp_path):
    # one process: two updates, each resuming from the previous state folder
    first = build(None, tmp_path / "one0")
    first.update(chunks()[0], task_id=0)
    second = build(tmp_path / "one0", tmp_path / "one1")
    second.update(chunks()[1], task_id=1)
    projection = second.learner.components[1]
    assert isinstance(projection, GradientMomentumProjection)
    assert int(projection.updates_seen) == 2 and int(projection.projected_steps) == second.learner.total_steps > 0
    means = projection.parameter_state("mean_grad", second.model)
    assert set(means) == {n for n, p in second.model.named_parameters()} and all(
        m.abs().sum() > 0 for m in means.values()
    )
    # two fresh processes, one per update
    env = {**os.environ, "PYTHONPATH": f"{TESTS.parents[1]}{os.pathsep}{TESTS}"}
    for source, target, index in (("-", "two0", 0), (str(tmp_path / "two0"), "two1", 1)):
        done = subprocess.run(
            [sys.executable, str(TESTS / "third_party.py"), source, str(tmp_path / target), str(index)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    _assert_same(_payloads(tmp_path / "one1"), _payloads(tmp_path / "two1"))


def test_gradient_hook_sees_and_changes_the_gradients():
    class ZeroBias(Component):
        def on_before_optimizer_step(self, ctx: StepContext) -> None:
            for name, p in ctx.model.named_parameters():
                assert p.grad is not None
                if name.endswith("bias"):
                    p.grad.zero_()

    torch.manual_seed(0)
    model = MLP(hidden=(16,))
    biases = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("bias")}
    updater = R.FineTuningModelUpdater(model, nn.CrossEntropyLoss(), _sgd(), batch_size=16, **QUIET)
    updater.learner.components.append(ZeroBias())
    updater.update(chunks()[0])
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.equal(p.detach(), biases[name]), name


def test_a_component_returning_a_non_scalar_is_refused_and_nothing_changes(tmp_path):
    class Vector(Component):
        def loss(self, ctx):
            return ctx.outputs.sum(dim=1)

    torch.manual_seed(0)
    model = MLP(hidden=(16,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    updater = R.ExperienceReplayModelUpdater(
        model,
        nn.CrossEntropyLoss(),
        _sgd(),
        memory_size=20,
        batch_size=16,
        components=[Vector()],
        output_state_folder=tmp_path / "out",
        **QUIET,
    )
    with pytest.raises(ValueError, match=r"Vector.loss must return a scalar tensor or None, got \(8,\)"):
        updater.update(chunks()[0])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert len(updater.memory) == 0 and not (tmp_path / "out").exists()


def test_weights_are_applied_by_the_learner_and_penalties_skip_the_normaliser():
    class Constant(Component):
        def __init__(self, weight, value, normalized=True):
            super().__init__(weight)
            self.value, self.normalized = value, normalized

        def loss(self, ctx):
            return torch.tensor(self.value)

    learner = R.Learner(
        MLP(hidden=(8,)), nn.CrossEntropyLoss(), _sgd(), [Constant(2.0, 3.0), Constant(0.5, 4.0, False)]
    )
    batch = (torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))
    total, ctx = learner.step_loss(batch)
    new = ctx.losses["loss/new"]
    # (1 * L_new + 2 * 3) / (1 + 2) + 0.5 * 4
    assert torch.allclose(total, (new + 6.0) / 3.0 + 2.0)
    assert torch.allclose(ctx.losses["loss/0_Constant"], torch.tensor(6.0))


def test_per_parameter_state_is_declared_saved_reset_and_loaded():
    model = nn.Linear(3, 2)
    component = GradientMomentumProjection()
    state = component.parameter_state("mean_grad", model)
    assert set(state) == {"weight", "bias"} and state["weight"].shape == (2, 3)
    state["weight"].fill_(2.0)
    saved = component.state_dict()
    assert torch.equal(saved["mean_grad__weight"], torch.full((2, 3), 2.0))
    other = GradientMomentumProjection()
    other.load_state_dict(saved)  # creates the per-parameter buffers before loading them
    assert torch.equal(other.parameter_state("mean_grad", model)["weight"], torch.full((2, 3), 2.0))
    other.projected_steps.fill_(5)
    other.reset_state()
    assert int(other.projected_steps) == 0 and not other.parameter_state("mean_grad", model)["weight"].any()


# ---------------------------------------------------------------- per-sample losses
UNREDUCED_CASES = {
    "fine_tuning": (R.FineTuningModelUpdater, {}),
    "er": (R.ExperienceReplayModelUpdater, dict(memory_size=40)),
    "der++": (R.DarkExperienceReplayModelUpdater, dict(memory_size=40)),
    "pod_er": (R.PooledOutputDistillationExperienceReplayModelUpdater, dict(memory_size=40)),
    "cls_er": (R.CLSExperienceReplayModelUpdater, dict(memory_size=40)),
    "super_er": (R.SuperExperienceReplayModelUpdater, dict(memory_size=40)),
    "offline_er": (R.OfflineExperienceReplayModelUpdater, dict(memory_size=40)),
    "gdumb": (R.GDumbModelUpdater, dict(memory_size=40)),
    "joint": (R.JointModelUpdater, {}),
}


@pytest.mark.parametrize("name", list(UNREDUCED_CASES))
def test_unreduced_loss_gives_the_numbers_of_the_mean_reduced_one(name, split_small):
    cls, arguments = UNREDUCED_CASES[name]
    train = [chunk.subset(torch.arange(64)) for chunk in split_small[0][:2]]
    weights = []
    for reduction in ("mean", "none"):
        torch.manual_seed(0)
        updater = cls(
            MLP(hidden=(16,)),
            nn.CrossEntropyLoss(reduction=reduction),
            _sgd(),
            batch_size=16,
            seed=1,
            **arguments,
            **QUIET,
        )
        for i, chunk in enumerate(train):
            updater.update(chunk, task_id=i)
        weights.append(updater.model.state_dict())
    for key in weights[0]:
        assert torch.allclose(weights[0][key], weights[1][key], atol=1e-6, rtol=0), key


def test_a_per_sample_loss_of_the_wrong_length_is_refused():
    def bad_loss(logits, targets):
        return nn.functional.cross_entropy(logits, targets, reduction="none")[:-1]

    updater = R.FineTuningModelUpdater(MLP(hidden=(8,)), bad_loss, _sgd(), batch_size=16, **QUIET)
    with pytest.raises(
        ValueError, match=r"loss_fn must return a scalar or one value per sample \(shape \(16,\)\), got shape \(15,\)"
    ):
        updater.update(chunks()[0])


# ---------------------------------------------------------------- transforms
class Spy:
    """A batched transform that records what it was given and what it returned."""

    takes_batch = True

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, x):
        out = self.inner(x)
        self.calls.append((x.clone(), out.clone()))
        return out


def test_buffer_transform_is_applied_to_replayed_samples_only(mnist_train):
    pl.seed_everything(0, verbose=False)
    images = mnist_train.inputs[:128].reshape(-1, 1, 28, 28)
    chunk = TensorChunk(images, mnist_train.targets[:128])
    spy = Spy(Compose(RandomCrop(28, padding=4), RandomHorizontalFlip()))
    model = SmallCNN()
    seen = []
    # training forwards only (the checks before training probe the model in eval mode)
    model.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()) if module.training else None
    )
    updater = R.ExperienceReplayModelUpdater(
        model, nn.CrossEntropyLoss(), _sgd(0.01), memory_size=32, batch_size=32, buffer_transform=spy, **QUIET
    )
    updater.update(chunk)
    raw = {tuple(x.flatten().tolist()) for x in images}
    replays = [(given, out) for given, out in spy.calls if given.shape[0] > 1]  # not the one-sample probe
    assert replays, "the memory was never replayed"
    changed = 0
    for forward, (given, out) in zip(seen[-len(replays) :], replays):
        k = given.shape[0]
        assert torch.equal(forward[-k:], out)  # replayed samples reach the model transformed
        assert all(tuple(x.flatten().tolist()) in raw for x in forward[:-k])  # new samples untouched
        assert all(tuple(x.flatten().tolist()) in raw for x in given)  # the memory hands out raw samples
        changed += int(not torch.equal(given, out))
    assert changed == len(replays)
    stored = updater.memory.decoded("inputs")
    assert all(tuple(x.flatten().tolist()) in raw for x in stored)  # stored untransformed


def test_a_transform_the_model_cannot_take_is_refused_before_training(tmp_path):
    model = MLP(hidden=(8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    class Shrink:
        takes_batch = True

        def __call__(self, x):
            return x[..., :20, :20]

    updater = R.ExperienceReplayModelUpdater(
        model,
        nn.CrossEntropyLoss(),
        _sgd(),
        memory_size=20,
        batch_size=16,
        train_transform=Shrink(),
        output_state_folder=tmp_path / "out",
        **QUIET,
    )
    with pytest.raises(DataError, match=r"train_transform.*shape \(1, 20, 20\).*cannot run"):
        updater.update(chunks()[0])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- no host sync per step
def test_the_training_step_reads_no_tensor_back_to_python(monkeypatch):
    package = str(Path(R.__file__).resolve().parent)
    reads: list[str] = []
    inside = {"step": False}

    def spy(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if inside["step"]:
                frame = sys._getframe(1)
                if frame.f_code.co_filename.startswith(package):
                    reads.append(f"{name} at {frame.f_code.co_filename}:{frame.f_lineno}")
            return original(self, *args, **kwargs)

        return wrapper

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, spy(name))
    original_step = R.Learner.training_step

    def step(self, batch, batch_idx):
        inside["step"] = True
        try:
            return original_step(self, batch, batch_idx)
        finally:
            inside["step"] = False

    monkeypatch.setattr(R.Learner, "training_step", step)
    g = torch.Generator().manual_seed(0)
    images = [  # CIFAR-sized uint8 images for ResNet-18 under the paper's augmentation
        TensorChunk(
            torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(48) % 2 + 2 * i
        )
        for i in range(2)
    ]
    cifar = {"train_transform": cifar10_train_transform(), "test_transform": cifar10_test_transform()}
    workloads = [(lambda: MLP(hidden=(16,)), chunks(), {}), (lambda: ResNet18(nf=4), images, cifar)]
    for cls, extra in ((R.ExperienceReplayModelUpdater, {}), (R.DarkExperienceReplayModelUpdater, {})):
        for make_model, data, transforms in workloads:
            torch.manual_seed(0)
            updater = cls(
                make_model(),
                nn.CrossEntropyLoss(),
                _sgd(),
                memory_size=40,
                batch_size=16,
                log_every_n_steps=10_000,
                **extra,
                **transforms,
                **QUIET,
            )
            for i, chunk in enumerate(data):
                updater.update(chunk, task_id=i)
            assert updater.learner.total_steps > 10
    assert reads == []


def test_a_nan_still_stops_the_update_at_its_step(tmp_path):
    x = torch.rand(64, 1, 28, 28)
    x[40] = float("nan")  # reaches the loss in the third batch of 16 (unshuffled order is not assumed)

    class Plain(torch.utils.data.Dataset):  # no exposed tensors: checked during training only
        def __len__(self):
            return 64

        def __getitem__(self, i):
            return x[i], torch.tensor(i % 2)

    model = MLP(hidden=(8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    updater = R.FineTuningModelUpdater(
        model, nn.CrossEntropyLoss(), _sgd(), batch_size=16, output_state_folder=tmp_path / "out", **QUIET
    )
    with pytest.raises(R.NonFiniteLossError, match=r"became nan at step [0-3] \(task 0\)"):
        updater.update(Plain())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- growing models
class Growing(nn.Module):
    """One linear head per task, added by ``adapt``; earlier heads frozen."""

    takes_task_ids = True

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(784, 16)
        self.heads = nn.ModuleDict()

    def adapt(self, task_id) -> None:
        key = str(task_id)
        if key not in self.heads:
            for head in self.heads.values():
                head.requires_grad_(False)
            self.heads[key] = nn.Linear(16, 4)

    def forward(self, x, task_ids):
        h = torch.relu(self.body(x.flatten(1)))
        out = torch.stack([self.heads[str(t)](h[i]) for i, t in enumerate(task_ids.tolist())])
        return out


def test_a_growing_model_is_rebuilt_from_the_state_folder(tmp_path):
    torch.manual_seed(0)
    model = Growing()  # no head yet: the update grows the first one before it probes the model
    first = R.FineTuningModelUpdater(
        model, nn.CrossEntropyLoss(), _sgd(), batch_size=16, output_state_folder=tmp_path / "s0", **QUIET
    )
    first.update(chunks()[0], task_id=0)
    head0 = {k: v.clone() for k, v in model.heads["0"].state_dict().items()}
    torch.manual_seed(1)
    second_model = Growing()  # built as for the first chunk; the state folder grows it
    second = R.FineTuningModelUpdater(
        second_model,
        nn.CrossEntropyLoss(),
        _sgd(),
        batch_size=16,
        input_state_folder=tmp_path / "s0",
        output_state_folder=tmp_path / "s1",
        **QUIET,
    )
    assert set(second_model.heads) == {"0"}
    assert all(torch.equal(v, second_model.heads["0"].state_dict()[k]) for k, v in head0.items())
    second.update(chunks()[1], task_id=1)
    assert all(torch.equal(v, second_model.heads["0"].state_dict()[k]) for k, v in head0.items())  # frozen
    # a fresh process builds the head-less model; the state folder alone grows it back
    rebuilt = R.load_model(Growing(), tmp_path / "s1")
    assert set(rebuilt.heads) == {"0", "1"}
    assert all(torch.equal(v, second_model.state_dict()[k]) for k, v in rebuilt.state_dict().items())
    third = R.FineTuningModelUpdater(
        Growing(), nn.CrossEntropyLoss(), _sgd(), input_state_folder=tmp_path / "s1", **QUIET
    )
    assert set(third.model.heads) == {"0", "1"} and third.task_order == [0, 1]
    assert all(torch.equal(v, second_model.state_dict()[k]) for k, v in third.model.state_dict().items())


# ---------------------------------------------------------------- captured arguments
def test_every_constructor_argument_is_captured_including_scheduler_and_policy():
    scheduler = partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    updater = R.ExperienceReplayModelUpdater(
        MLP(hidden=(8,)),
        nn.CrossEntropyLoss(),
        _sgd(0.2),
        memory_size=30,
        alpha=0.7,
        learning_rate_scheduler=scheduler,
        memory_policy=R.GreedyClassBalancedPolicy(),
        **QUIET,
    )
    h = updater.hyperparameters
    assert h["alpha"] == 0.7 and h["memory_size"] == 30 and h["batch_size"] == 32
    assert h["learning_rate_scheduler"] == {"callable": "StepLR", "kwargs": {"step_size": 1}}
    assert h["memory_policy"] in ("GreedyClassBalancedPolicy", {"class": "GreedyClassBalancedPolicy"})
    assert h["optimizer"] == {"callable": "SGD", "kwargs": {"lr": 0.2}}
    assert "model" not in h and "output_state_folder" not in h and "logger" not in h
    other = R.ExperienceReplayModelUpdater(MLP(hidden=(8,)), nn.CrossEntropyLoss(), _sgd(0.2), memory_size=30, **QUIET)
    assert other.hyperparameters["learning_rate_scheduler"] is None


# ---------------------------------------------------------------- update-end memory work
def test_update_end_insertion_replays_earlier_chunks_only(tmp_path):
    class Watch(Component):
        def __init__(self):
            super().__init__(0.0)
            self.max_task = []

        def on_after_step(self, ctx):
            if ctx.memory is not None:
                self.max_task.append(int(ctx.memory.task_ids.max()))

    watch = Watch()
    torch.manual_seed(0)
    updater = R.DarkExperienceReplayModelUpdater(
        MLP(hidden=(16,)),
        nn.CrossEntropyLoss(),
        _sgd(),
        memory_size=50,
        batch_size=16,
        components=[watch],
        memory_insertion="update_end",
        **QUIET,
    )
    updater.update(chunks()[0], task_id=0)
    assert watch.max_task == [] and len(updater.memory) == 50  # no replay while the memory was empty
    updater.update(chunks()[1], task_id=1)
    assert watch.max_task and max(watch.max_task) == 0  # replay held only the earlier chunk
    stored = updater.memory.storage
    assert int(stored["task_ids"][: len(updater.memory)].max()) == 1  # the chunk went in at the end
    # DER's logits were computed by the trained model in eval mode
    mask = stored["task_ids"][: len(updater.memory)] == 1
    updater.model.eval()
    with torch.no_grad():
        fresh = updater.model(updater.memory.decoded("inputs")[mask])
    assert torch.allclose(stored["logits"][: len(updater.memory)][mask], fresh, atol=1e-6)


def test_refresh_recomputes_the_logits_of_this_updates_samples_only():
    torch.manual_seed(0)
    updater = R.DarkExperienceReplayModelUpdater(
        MLP(hidden=(16,)),
        nn.CrossEntropyLoss(),
        _sgd(),
        memory_size=60,
        batch_size=16,
        refresh_memory_metadata=True,
        **QUIET,
    )
    updater.update(chunks()[0], task_id=0)
    size = len(updater.memory)
    logits_before = updater.memory.storage["logits"][:size].clone()
    tasks_before = updater.memory.storage["task_ids"][:size].clone()
    updater.update(chunks()[1], task_id=1)
    stored = updater.memory.storage
    n = len(updater.memory)
    updater.model.eval()
    with torch.no_grad():
        fresh = updater.model(updater.memory.decoded("inputs"))
    new = stored["task_ids"][:n] == 1
    assert new.any() and torch.allclose(stored["logits"][:n][new], fresh[new], atol=1e-6)
    old_slots = (~new).nonzero().flatten()
    kept = old_slots[tasks_before[old_slots] == 0]
    assert torch.equal(stored["logits"][kept], logits_before[kept])  # earlier targets untouched
