# Renate's examples/train_mlp_locally/renate_config.py (Renate 0.5.2), ported to retentive.
# Changed: the imports; MNIST is read from local idx files (RETENTIVE_DATA or data_path, no
# download) instead of torchvision's TorchVisionDataModule + ClassIncrementalScenario, by the small
# RenateDataModule below with the same groupings, val_size and seed; the model is retentive's MLP
# (Renate's MultiLayerPerceptron with the same sizes); model_fn's model_state_url branch is gone,
# because retentive restores the weights from the input state folder itself. Everything else
# (function names, arguments, transform, loss, metrics) is Renate's.
from typing import Callable, Dict, Optional

import torch
from torchmetrics import Accuracy

from retentive.data import class_incremental, load_mnist
from retentive.models import MLP
from retentive.training import RenateDataModule

GROUPINGS = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))


class ClassIncrementalMNIST(RenateDataModule):
    """MNIST's training set, one class group per chunk; val_data() holds the validation split of
    every chunk up to ``chunk_id`` (a search must not reward forgetting)."""

    def __init__(self, data_path: str, chunk_id: int, val_size: float, seed: int) -> None:
        super().__init__(data_path, val_size=val_size, seed=seed)
        self._chunk_id = chunk_id

    def prepare_data(self) -> None:
        load_mnist("train", root=None)  # fails clearly if the idx files are missing; never downloads

    def setup(self) -> None:
        chunks = class_incremental(load_mnist("train"), GROUPINGS)
        splits = [self._split_train_val_data(chunk) for chunk in chunks[: self._chunk_id + 1]]
        self._train_data = splits[-1][0]
        self._val_data = torch.utils.data.ConcatDataset([val for _, val in splits])


def data_module_fn(data_path: str, chunk_id: int, seed: int = 0) -> RenateDataModule:
    """Returns a class-incremental data module."""
    return ClassIncrementalMNIST(data_path, chunk_id=chunk_id, val_size=0.1, seed=seed)


def model_fn(model_state_url: Optional[str] = None) -> torch.nn.Module:
    """Returns a model instance."""
    return MLP(in_features=784, hidden=(128, 128), num_classes=10)


def train_transform() -> Callable:
    """Returns a transform function to be used in the training."""
    return torch.nn.Flatten()


def loss_fn() -> torch.nn.Module:
    return torch.nn.CrossEntropyLoss(reduction="none")


def metrics_fn() -> Dict:
    return {"accuracy": Accuracy(task="multiclass", num_classes=10)}
