"""Shared fixtures: one torch thread (2-core CI), real MNIST subsets, quiet Lightning."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

torch.set_num_threads(1)
for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")


@pytest.fixture(scope="session")
def mnist_train():
    from retentive.data import load_mnist

    return load_mnist("train")


@pytest.fixture(scope="session")
def mnist_test():
    from retentive.data import load_mnist

    return load_mnist("test")


def small_split(dataset, per_chunk: int, seed: int = 0):
    """Split-MNIST with the first ``per_chunk`` samples of each two-digit chunk (fast tests)."""
    from retentive.data import split_mnist

    g = torch.Generator().manual_seed(seed)
    chunks = split_mnist(dataset)
    return [c.subset(torch.randperm(len(c), generator=g)[:per_chunk]) for c in chunks]


@pytest.fixture(scope="session")
def split_small(mnist_train, mnist_test):
    """(train chunks of 1000, test chunks of 300) for end-to-end tests on real data."""
    return small_split(mnist_train, 1000), small_split(mnist_test, 300)
