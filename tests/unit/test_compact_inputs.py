"""Compact memory inputs: uint8 storage of k/255 images is exact; float16 is opt-in and lossy."""

from __future__ import annotations

import pytest
import torch
from helpers import QUIET, sgd
from torch import nn

from retentive import DarkExperienceReplayModelUpdater
from retentive.data import TensorChunk
from retentive.errors import MemoryShapeError
from retentive.memory import ReplayBuffer
from retentive.memory.compact import decode, encode, parse_input_dtype
from retentive.models import MLP


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8).float().div_(255.0)


def test_every_uint8_level_round_trips_bit_exactly():
    levels = torch.arange(256, dtype=torch.uint8).float().div_(255.0)
    codes = encode(levels, torch.uint8)
    assert codes.dtype == torch.uint8 and codes.tolist() == list(range(256))
    assert torch.equal(decode(codes, torch.float32), levels)


def test_uint8_refuses_values_it_cannot_store_exactly():
    with pytest.raises(MemoryShapeError, match=r"k/255.*0\.5"):
        encode(torch.tensor([0.0, 0.5]), torch.uint8)
    normalised = (_images(2) - 0.1307) / 0.3081  # MNIST standardised: negative values
    with pytest.raises(MemoryShapeError, match="input_dtype='uint8'"):
        encode(normalised, torch.uint8)
    with pytest.raises(MemoryShapeError, match="floating-point"):
        encode(torch.arange(3), torch.uint8)


def test_float16_storage_is_lossy_but_close():
    x = torch.randn(100, 5)
    back = decode(encode(x, torch.float16), torch.float32)
    assert back.dtype == torch.float32 and torch.allclose(back, x, rtol=1e-3, atol=1e-4) and not torch.equal(back, x)


def test_input_dtype_names():
    assert parse_input_dtype("uint8") is torch.uint8 and parse_input_dtype(torch.bfloat16) is torch.bfloat16
    assert parse_input_dtype(None) is None
    with pytest.raises(ValueError, match="int8"):
        parse_input_dtype("int8")


def test_buffer_stores_uint8_and_samples_the_images_offered():
    x = _images(40)
    batch = {"inputs": x, "targets": torch.arange(40) % 10, "task_ids": torch.zeros(40, dtype=torch.long)}
    compact, plain = ReplayBuffer(30, seed=1, input_dtype="uint8"), ReplayBuffer(30, seed=1)
    compact.add(batch)
    plain.add(batch)
    assert compact.storage["inputs"].dtype == torch.uint8
    assert compact.storage["inputs"].nbytes * 4 == plain.storage["inputs"].nbytes
    drawn, reference = compact.sample(12), plain.sample(12)
    assert drawn.inputs.dtype == torch.float32 and torch.equal(drawn.inputs, reference.inputs)
    assert compact.spec("inputs") == (torch.Size([1, 28, 28]), torch.float32)
    # state moves between compact and plain buffers in both directions, content unchanged
    to_plain = ReplayBuffer(30)
    to_plain.load_state_dict(compact.state_dict())
    assert torch.equal(to_plain.storage["inputs"], plain.storage["inputs"])
    to_compact = ReplayBuffer(30, input_dtype="uint8")
    to_compact.load_state_dict(plain.state_dict())
    assert torch.equal(to_compact.storage["inputs"], compact.storage["inputs"])


@pytest.mark.slow
def test_updater_with_uint8_memory_end_to_end(split_small, tmp_path):
    train, _ = split_small
    kwargs = dict(memory_size=300, batch_size=32, alpha=0.5, beta=0.5, **QUIET)
    torch.manual_seed(0)
    compact = DarkExperienceReplayModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(),
        sgd(),
        memory_input_dtype="uint8",
        output_state_folder=tmp_path / "compact",
        **kwargs,
    )
    compact.update(train[0])
    torch.manual_seed(0)
    plain = DarkExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), output_state_folder=tmp_path / "plain", **kwargs
    )
    plain.update(train[0])
    # the same training: replayed inputs decode to exactly the images a float32 memory returns
    assert compact.memory.storage["inputs"].dtype == torch.uint8
    assert torch.equal(compact.memory.decoded("inputs"), plain.memory.storage["inputs"][:300])
    for key, value in plain.model.state_dict().items():
        assert torch.equal(compact.model.state_dict()[key], value), key
    sizes = {name: (tmp_path / name / "memory.pt").stat().st_size for name in ("compact", "plain")}
    assert sizes["compact"] < 0.35 * sizes["plain"]
    # a plain updater resumes from the compact folder and trains on the next chunk
    resumed = DarkExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), input_state_folder=tmp_path / "compact", **kwargs
    )
    assert torch.equal(resumed.memory.storage["inputs"], plain.memory.storage["inputs"])
    resumed.update(train[1])
    assert compact.hyperparameters["memory_input_dtype"] == "uint8"


def test_updater_refuses_inputs_uint8_cannot_hold(split_small):
    train, _ = split_small
    chunk = train[0]
    standardised = TensorChunk((chunk.inputs - 0.1307) / 0.3081, chunk.targets)
    updater = DarkExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=50, memory_input_dtype="uint8", **QUIET
    )
    with pytest.raises(MemoryShapeError, match="k/255"):
        updater.update(standardised)
    assert len(updater.memory) == 0  # put back as it was
