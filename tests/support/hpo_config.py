"""A small Renate config module for the training-job tests: Split-MNIST (real MNIST idx files),
a few hundred samples per chunk, validation on every chunk seen so far."""

from collections.abc import Callable

import torch
from torchmetrics import Accuracy

from retentive.data import load_mnist, split_mnist, subsample
from retentive.models import MLP
from retentive.training import RenateDataModule


class SplitMNIST(RenateDataModule):
    def __init__(self, data_path: str, chunk_id: int, n_train: int, n_val: int, seed: int) -> None:
        super().__init__(data_path, val_size=0.0, seed=seed)
        self._chunk_id, self._n_train, self._n_val = chunk_id, n_train, n_val

    def prepare_data(self) -> None:
        load_mnist("train")

    def setup(self) -> None:
        chunks = split_mnist(load_mnist("train"))
        self._train_data = subsample(chunks[self._chunk_id], self._n_train, seed=self._seed)
        seen = [subsample(c, self._n_val, seed=self._seed + 1) for c in chunks[: self._chunk_id + 1]]
        self._val_data = torch.utils.data.ConcatDataset(seen)


def data_module_fn(
    data_path: str, chunk_id: int, seed: int = 0, n_train: int = 400, n_val: int = 200
) -> RenateDataModule:
    return SplitMNIST(data_path, chunk_id, n_train, n_val, seed)


def model_fn(model_state_url: str | None = None) -> torch.nn.Module:
    return MLP(hidden=(32,))


def loss_fn() -> torch.nn.Module:
    return torch.nn.CrossEntropyLoss(reduction="none")


def metrics_fn() -> dict:
    return {"accuracy": Accuracy(task="multiclass", num_classes=10)}


def train_transform() -> Callable:
    return torch.nn.Flatten()
