"""Data: the MNIST idx reader, tensor chunks, and continual-learning scenarios."""

from retentive.data.mnist import MNISTNotFoundError, load_mnist, load_mnist_arrays
from retentive.data.scenarios import SPLIT_MNIST_CLASSES, class_incremental, split_mnist
from retentive.data.tensors import TensorChunk

__all__ = [
    "MNISTNotFoundError",
    "SPLIT_MNIST_CLASSES",
    "TensorChunk",
    "class_incremental",
    "load_mnist",
    "load_mnist_arrays",
    "split_mnist",
]
