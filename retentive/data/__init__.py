"""Data: the MNIST idx reader, tensor chunks, and continual-learning scenarios."""

from retentive.data.domains import LazyChunks, domain_incremental, permuted_mnist, rotated_mnist
from retentive.data.mnist import MNISTNotFoundError, load_mnist, load_mnist_arrays
from retentive.data.permutations import permute_pixels, random_permutations
from retentive.data.rotations import random_angles, rotate
from retentive.data.scenarios import (
    SPLIT_MNIST_CLASSES,
    class_incremental,
    concatenate,
    data_incremental,
    group_classes,
    iid_chunks,
    rank_bins,
    split_mnist,
    subsample,
    task_incremental,
)
from retentive.data.tensors import TensorChunk

__all__ = [
    "LazyChunks",
    "MNISTNotFoundError",
    "SPLIT_MNIST_CLASSES",
    "TensorChunk",
    "class_incremental",
    "concatenate",
    "data_incremental",
    "domain_incremental",
    "group_classes",
    "iid_chunks",
    "load_mnist",
    "load_mnist_arrays",
    "permute_pixels",
    "permuted_mnist",
    "random_angles",
    "random_permutations",
    "rank_bins",
    "rotate",
    "rotated_mnist",
    "split_mnist",
    "subsample",
    "task_incremental",
]
