"""The device path on the CPU: the CIFAR transforms (per-sample draws, reproducible, bytes and floats
alike), the copies to a GPU without a host sync, pinned loaders, and the model preparation options."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from retentive.data import TensorChunk
from retentive.data.loaders import training_loader
from retentive.data.transfer import dataset_device, pins_batches, to_device
from retentive.data.transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Normalize,
    cifar10_test_transform,
    cifar10_train_transform,
)
from retentive.models import ResNet18, prepare_model

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def images(n: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- transforms
def test_the_train_transform_draws_per_sample_and_is_reproducible():
    same = images(1).expand(64, -1, -1, -1)  # one image, 64 times
    augment = cifar10_train_transform()
    torch.manual_seed(3)
    out = augment(same)
    distinct = {bytes(row.numpy().tobytes()) for row in out}
    assert len(distinct) > 30  # 81 crops x 2 flips: a draw per sample, not one per batch
    torch.manual_seed(3)
    assert torch.equal(augment(same), out)
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32


def test_normalize_scales_bytes_and_the_padding_is_black():
    x = images(4)
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    assert torch.allclose(cifar10_test_transform()(x), (x.float() / 255 - mean) / std, atol=1e-6)
    assert torch.equal(cifar10_test_transform()(x), cifar10_test_transform()(x.float() / 255))
    torch.manual_seed(0)
    crops = cifar10_train_transform()(torch.full((256, 3, 32, 32), 255, dtype=torch.uint8))
    black = (-mean / std).view(3)
    corners = crops[:, :, 0, 0]  # a crop offset above or left of the image starts in the zero padding
    assert bool((corners == black).all(dim=1).any()) and bool((corners != black).all(dim=1).any())


def test_normalize_refuses_bad_settings_and_shapes_and_pickles_without_its_cache():
    with pytest.raises(ValueError, match="one mean and one std per channel"):
        Normalize((0.5, 0.5), (0.2,))
    with pytest.raises(ValueError, match="every std > 0"):
        Normalize((0.5,), (0.0,))
    norm = Normalize((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got shape \(2, 1, 8, 8\)"):
        norm(torch.rand(2, 1, 8, 8))
    norm(torch.rand(2, 3, 8, 8))
    assert norm._constants and pickle.loads(pickle.dumps(norm))._constants == {}


# ---------------------------------------------------------------- copies to the device
class Recorder:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, dict]] = []
        monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor: self.pin(tensor))
        monkeypatch.setattr(torch.Tensor, "to", lambda tensor, *args, **kwargs: self.to(tensor, *args, **kwargs))

    def pin(self, tensor: torch.Tensor) -> torch.Tensor:
        self.calls.append(("pin_memory", {}))
        return tensor

    def to(self, tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.calls.append(("to", {"args": args, **kwargs}))
        return tensor


def test_a_copy_to_a_gpu_is_pinned_and_non_blocking(monkeypatch):
    x = torch.arange(4)
    assert to_device(x, CPU) is x  # already there: no copy
    recorder = Recorder(monkeypatch)
    to_device(x, CUDA)
    assert recorder.calls == [("pin_memory", {}), ("to", {"args": (CUDA,), "non_blocking": True})]


def test_the_memory_sends_its_replay_indices_without_a_host_sync(monkeypatch):
    from retentive.memory import ReplayBuffer

    memory = ReplayBuffer(8)
    memory.add({"inputs": torch.rand(8, 2), "targets": torch.arange(8), "task_ids": torch.zeros(8, dtype=torch.long)})
    memory.device = CUDA  # what on_fit_start sets on a GPU; the storage itself stays here
    recorder = Recorder(monkeypatch)
    memory.sample(4)
    assert ("to", {"args": (CUDA,), "non_blocking": True}) in recorder.calls
    to_gpu = [kwargs for name, kwargs in recorder.calls if name == "to" and CUDA in kwargs["args"]]
    assert to_gpu and all(kwargs.get("non_blocking") for kwargs in to_gpu)


def test_the_loader_pins_host_batches_for_a_gpu_only():
    chunk = TensorChunk(torch.rand(8, 3), torch.zeros(8, dtype=torch.long))
    assert dataset_device(chunk) == CPU
    assert pins_batches(chunk, CUDA) and not pins_batches(chunk, CPU)
    on_meta = TensorChunk(torch.empty(8, 3, device="meta"), torch.zeros(8, dtype=torch.long))
    assert not pins_batches(on_meta, CUDA)  # data held on a device is not pinned (nor pinnable)
    assert training_loader(chunk, 4, True, 0, pin_memory=True).pin_memory
    assert not training_loader(chunk, 4, True, 0).pin_memory


# ---------------------------------------------------------------- model options
def test_prepare_model_converts_in_place_and_refuses_what_it_cannot_take():
    model = ResNet18(nf=4)
    assert prepare_model(model, channels_last=True) is model
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    out = model.eval()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)
    with pytest.raises(TypeError, match="takes an nn.Module"):
        prepare_model("resnet")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="compile must be a bool or a dict"):
        prepare_model(nn.Linear(2, 2), compile="max-autotune")  # type: ignore[arg-type]
