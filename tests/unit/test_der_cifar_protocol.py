"""benchmarks/der_cifar.py's protocol settings: Mammoth's best arguments for seq-cifar10 per method
and memory size, the paper's augmentation on new and replayed samples, and its size knobs."""

from __future__ import annotations

import pytest
import torch
from script_modules import load_script

from retentive.data import TensorChunk
from retentive.data.transforms import Normalize, RandomCrop, RandomHorizontalFlip


@pytest.fixture(scope="module")
def der_cifar():
    return load_script("benchmarks/der_cifar.py", "der_cifar")


@pytest.mark.parametrize(
    ("name", "memory", "lr", "alpha", "beta"),
    [
        ("er", 200, 0.1, 1.0, None),
        ("der", 500, 0.03, 0.3, 0.0),
        ("derpp", 200, 0.03, 0.1, 0.5),
        ("derpp", 500, 0.03, 0.2, 0.5),
    ],
)
def test_replay_methods_take_mammoths_best_arguments(der_cifar, name, memory, lr, alpha, beta):
    method = der_cifar.benchmark_method(name, memory, epochs=50, device="cpu", precision="32")
    args = method.args
    assert method.optimizer == "SGD" and dict(method.optimizer_args) == {"lr": lr}  # no momentum
    assert (args["memory_size"], args["batch_size"], args["memory_batch_size"], args["max_epochs"]) == (
        memory,
        32,
        32,
        50,
    )
    assert args["alpha"] == alpha and args.get("beta") == beta
    assert args["loss_normalization"] is (name == "er")  # ER: one CE over new + memory; DER(++): the plain sum
    steps = [type(t) for t in args["buffer_transform"].transforms]
    assert steps == [RandomCrop, RandomHorizontalFlip, Normalize]  # replayed samples are augmented too
    assert [type(t) for t in args["train_transform"].transforms] == steps


def test_baselines_fine_tune_without_memory_and_the_device_picks_the_accelerator(der_cifar):
    for name in ("sgd", "joint"):
        method = der_cifar.benchmark_method(name, None, epochs=1, device="cuda", precision="bf16-mixed")
        assert method.updater == "FineTuningModelUpdater" and dict(method.optimizer_args) == {"lr": 0.1}
        assert "memory_size" not in method.args and "buffer_transform" not in method.args
        assert (method.args["accelerator"], method.args["precision"]) == ("gpu", "bf16-mixed")
    with pytest.raises(ValueError, match="unknown method"):
        der_cifar.benchmark_method("gem", 500, epochs=1, device="cpu", precision="32")


def test_per_class_keeps_n_samples_of_every_class(der_cifar):
    chunk = TensorChunk(torch.zeros(30, 3, 2, 2, dtype=torch.uint8), torch.arange(30) % 3)
    picked = der_cifar.per_class(chunk, 4, seed=0)
    assert torch.bincount(picked.targets).tolist() == [4, 4, 4]
    assert der_cifar.per_class(chunk, None, seed=0) is chunk


def test_bad_sizes_are_refused(der_cifar, capsys):
    with pytest.raises(SystemExit):
        der_cifar.parse_args(["--epochs", "0"])
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert der_cifar.parse_args(["--subset", "7"]).test_subset == 7
