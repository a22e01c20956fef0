"""ResNet-18 on CIFAR-sized images through the updaters: the paper's augmentation on new and
replayed samples only, raw bytes in the memory, the feature layer in iCaRL, PackNet, selection and
shift detection, and the device options (bf16 autocast, channels-last, compile) round-tripping
through state folders."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

import retentive as R
from retentive.data import TensorChunk
from retentive.data.transforms import CIFAR10_MEAN, CIFAR10_STD, cifar10_test_transform, cifar10_train_transform
from retentive.memory import HerdingPolicy
from retentive.models import FeatureTap, ResNet18, prepare_model
from retentive.shift import detect_shift

pytestmark = pytest.mark.slow

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)


def cifar_chunks(n: int = 48, tasks: int = 2, dtype: torch.dtype = torch.uint8) -> list[TensorChunk]:
    """Small CIFAR-shaped chunks of two classes each: uint8 bytes, or floats in [0, 1]."""
    g = torch.Generator().manual_seed(7)
    out = []
    for task in range(tasks):
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(2 * task, 2 * task + 2, (n,), generator=g)
        out.append(TensorChunk(x if dtype == torch.uint8 else x.float() / 255, y))
    return out


def model(nf: int = 4) -> ResNet18:
    torch.manual_seed(0)
    return ResNet18(nf=nf)


def build(cls: type, net: nn.Module | None = None, **kwargs) -> R.ModelUpdater:
    """``cls`` on ``net`` (a fresh ResNet-18 by default), cross-entropy, SGD lr 0.05, quiet, on the CPU."""
    net = model() if net is None else net
    return cls(net, nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.05), **kwargs, **QUIET)


class Recorded:
    """A batched transform that records what it was given and what it gave."""

    takes_batch = True

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if len(x) > 1:  # not the one-sample probes the updater runs before training
            self.calls.append((x.clone(), out.clone()))
        return out


class Watched(ResNet18):
    """ResNet-18 that records the inputs of its training and its evaluation forwards."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(nf=4)
        self.seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen[self.training].append(x.detach().clone())
        return super().forward(x)


def test_the_augmentation_reaches_new_and_replayed_samples_only_and_the_memory_keeps_raw_bytes():
    first, second = cifar_chunks()
    train, buffer, test = (
        Recorded(cifar10_train_transform()),
        Recorded(cifar10_train_transform()),
        Recorded(cifar10_test_transform()),
    )
    net = Watched()
    updater = build(
        R.ExperienceReplayModelUpdater,
        net,
        memory_size=40,
        batch_size=32,
        train_transform=train,
        buffer_transform=buffer,
        test_transform=test,
    )
    updater.update(first, task_id=0)
    for recorder in (train, buffer, test):
        recorder.calls.clear()
    net.seen = {True: [], False: []}
    updater.update(second, val_dataset=first, task_id=1)
    # every training forward: the new half is train_transform's output, the replayed half buffer_transform's
    steps = net.seen[True]
    assert len(steps) == len(train.calls) == len(buffer.calls) == 3  # 48 samples in batches of 16 new
    for x, (_, new), (stored, replayed) in zip(steps, train.calls, buffer.calls):
        assert torch.equal(x, torch.cat([new, replayed]))
        assert stored.dtype == torch.uint8  # the memory hands out the raw bytes ...
        assert not torch.equal(new, cifar10_test_transform()(_))  # ... and each draw is augmented
    # evaluation: the normalisation alone, never the augmentation, on the raw validation bytes
    evaluated = [x for x in net.seen[False] if len(x) > 1]  # not the one-sample probes
    assert len(evaluated) == len(test.calls) == 3
    assert all(torch.equal(x, out) for x, (_, out) in zip(evaluated, test.calls))
    assert torch.equal(torch.cat([raw for raw, _ in test.calls]), first.inputs)
    expected = (first.inputs.float() / 255 - torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        CIFAR10_STD
    ).view(1, 3, 1, 1)
    assert torch.allclose(torch.cat([out for _, out in test.calls]), expected, atol=1e-6)
    # the memory stores samples exactly as the chunks gave them: uint8 rows of the chunks
    stored = updater.memory.decoded("inputs")
    assert stored.dtype == torch.uint8
    pool = torch.cat([first.inputs, second.inputs]).flatten(1)
    assert all(bool((pool == row).all(dim=1).any()) for row in stored.flatten(1))


def test_resnet18_trains_through_er_and_derpp_and_reloads_from_its_state_folder(tmp_path):
    first, second = cifar_chunks()
    for name, cls, extra in (
        ("er", R.ExperienceReplayModelUpdater, {}),
        ("der", R.DarkExperienceReplayModelUpdater, {"alpha": 0.2, "beta": 0.5}),
    ):
        common = dict(
            memory_size=40,
            batch_size=32,
            train_transform=cifar10_train_transform(),
            test_transform=cifar10_test_transform(),
            **extra,
        )
        net = model()
        before = {k: v.clone() for k, v in net.state_dict().items()}
        updater = build(cls, net, output_state_folder=tmp_path / name / "s0", **common)
        updater.update(first, task_id=0)
        assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items() if "weight" in k)
        folders = {"input_state_folder": tmp_path / name / "s0", "output_state_folder": tmp_path / name / "s1"}
        again = build(cls, **folders, **common)
        x = cifar10_test_transform()(second.inputs[:8])
        with torch.no_grad():
            assert torch.equal(again.model.eval()(x), net.eval()(x))
        again.model.train()
        again.update(second, task_id=1)
        reloaded = R.load_model(model(), tmp_path / name / "s1").eval()
        with torch.no_grad():
            assert torch.equal(reloaded(x), again.model.eval()(x))


def test_icarl_selection_and_shift_detection_find_resnet18_features(tmp_path):
    first, second = cifar_chunks(dtype=torch.float32)
    icarl = build(R.ICaRLModelUpdater, memory_size=20, batch_size=16)
    assert icarl.hyperparameters["feature_layer"] is None  # the default rule: the classifier's input
    icarl.update(first, task_id=0)
    icarl.update(second, task_id=1)
    assert len(icarl.memory) == 20
    herding = build(
        R.ExperienceReplayModelUpdater,
        memory_size=10,
        batch_size=16,
        memory_policy=HerdingPolicy(),
        output_state_folder=tmp_path / "herding",
    )
    herding.update(first, task_id=0)
    assert len(herding.memory) == 10 and set(herding.memory.decoded("targets").tolist()) == {0, 1}
    trained = herding.model.eval()
    result = detect_shift(second, state_folder=tmp_path / "herding", model=trained, num_permutations=20)
    assert 0.0 < result.p_value <= 1.0
    with FeatureTap(trained) as tap, torch.no_grad():
        trained(first.inputs[:4])
        assert tap.features(rows=4).shape == (4, 32)


def test_packnet_keeps_an_earlier_tasks_function_on_resnet18():
    first, second = cifar_chunks(dtype=torch.float32)
    updater = build(R.PackNetModelUpdater, prune_ratio=0.5, post_prune_epochs=1, batch_size=16)
    packed = updater.update(first, task_id=0)
    x, task0 = first.inputs[:8], torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        before = packed.eval()(x, task0)
    packed.train()
    packed = updater.update(second, task_id=1)
    with torch.no_grad():
        assert torch.equal(packed.eval()(x, task0), before)


def test_bf16_channels_last_and_compile_train_and_save_plain_weights(tmp_path):
    first, second = cifar_chunks()
    net = prepare_model(model(), channels_last=True, compile={"backend": "eager"})
    assert net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    updater = build(
        R.DarkExperienceReplayModelUpdater,
        net,
        alpha=0.2,
        beta=0.5,
        memory_size=40,
        batch_size=32,
        precision="bf16-mixed",
        train_transform=cifar10_train_transform(),
        test_transform=cifar10_test_transform(),
        output_state_folder=tmp_path / "s0",
    )
    updater.update(first, task_id=0)
    assert updater.effective_precision == "bf16-mixed"
    assert updater.memory.decoded("logits").dtype == torch.float32  # metadata stays float32 under autocast
    plain = R.load_model(model(), tmp_path / "s0")  # the keys carry no compile prefix
    assert set(plain.state_dict()) == set(model().state_dict())
    x = cifar10_test_transform()(second.inputs[:8])
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), net.eval()(x), atol=1e-5)
