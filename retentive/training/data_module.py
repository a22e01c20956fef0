"""``RenateDataModule``: Renate's data-module interface, so a Renate config's ``data_module_fn``
runs unchanged.

``prepare_data()`` fetches or unpacks data (run once per job, before any trial); ``setup()``
builds the datasets (run by every trial); ``train_data()`` / ``val_data()`` / ``test_data()`` and
the collate functions return them. A search scores trials on ``val_data()``, so it should hold
data of every chunk seen so far.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset


class RenateDataModule(abc.ABC):
    """Bundles loading and preparation of one chunk's data (Renate's ``renate.data.data_module``).

    Args:
        data_path: the folder the data lives in (a job passes ``<working_directory>/data``).
        src_bucket, src_object_name: Renate's S3 source; not supported (a clear error).
        val_size: fraction of the training data split off for validation (0: none).
        seed: seeds that split.
    """

    def __init__(
        self,
        data_path: str | os.PathLike[str],
        src_bucket: str | None = None,
        src_object_name: str | None = None,
        val_size: float = 0.0,
        seed: int = 0,
    ) -> None:
        if src_bucket is not None or src_object_name is not None:
            raise ValueError(f"src_bucket={src_bucket!r}: data from S3 is not supported; pass a local data_path")
        if not 0.0 <= float(val_size) <= 1.0:
            raise ValueError(f"val_size must be in [0, 1], got {val_size!r}")
        self._data_path = data_path
        self._val_size = float(val_size)
        self._seed = int(seed)
        self._train_data: Dataset | None = None
        self._val_data: Dataset | None = None
        self._test_data: Dataset | None = None
        self._train_collate_fn: Callable[..., Any] | None = None
        self._val_collate_fn: Callable[..., Any] | None = None
        self._test_collate_fn: Callable[..., Any] | None = None

    @abc.abstractmethod
    def prepare_data(self) -> None:
        """Fetch or unpack the data (once per job)."""

    @abc.abstractmethod
    def setup(self) -> None:
        """Build the train, validation and test datasets."""

    def train_data(self) -> Dataset | None:
        return self._train_data

    def val_data(self) -> Dataset | None:
        return self._val_data

    def test_data(self) -> Dataset | None:
        return self._test_data

    def train_collate_fn(self) -> Callable[..., Any] | None:
        return self._train_collate_fn

    def val_collate_fn(self) -> Callable[..., Any] | None:
        return self._val_collate_fn

    def test_collate_fn(self) -> Callable[..., Any] | None:
        return self._test_collate_fn

    def _split_train_val_data(self, train_data: Dataset) -> tuple[Dataset, Dataset | None]:
        """Split ``val_size`` of ``train_data`` off for validation, reproducibly by ``seed``."""
        if self._val_size == 0.0:
            return train_data, None
        import torch
        from torch.utils.data import random_split

        n = len(train_data)  # type: ignore[arg-type]
        n_val = int(round(self._val_size * n))
        generator = torch.Generator().manual_seed(self._seed)
        train, val = random_split(train_data, [n - n_val, n_val], generator=generator)
        return train, val
