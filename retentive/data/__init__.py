"""Data: the MNIST and CIFAR-10 readers, image folders, tensor chunks, and continual-learning scenarios."""

from retentive.data.cifar import CIFAR10NotFoundError, cifar10
from retentive.data.domains import LazyChunks, domain_incremental, permuted_mnist, rotated_mnist
from retentive.data.images import ImageDataset, image_folder
from retentive.data.mnist import MNISTNotFoundError, load_mnist, load_mnist_arrays
from retentive.data.permutations import permute_pixels, random_permutations
from retentive.data.rotations import random_angles, rotate
from retentive.data.scenarios import (
    SEQ_CIFAR10_CLASSES,
    SPLIT_MNIST_CLASSES,
    class_incremental,
    concatenate,
    data_incremental,
    group_classes,
    iid_chunks,
    rank_bins,
    seq_cifar10,
    split_mnist,
    subsample,
    task_incremental,
)
from retentive.data.tensors import TensorChunk

__all__ = [
    "CIFAR10NotFoundError",
    "ImageDataset",
    "LazyChunks",
    "MNISTNotFoundError",
    "SEQ_CIFAR10_CLASSES",
    "SPLIT_MNIST_CLASSES",
    "TensorChunk",
    "cifar10",
    "class_incremental",
    "concatenate",
    "data_incremental",
    "domain_incremental",
    "group_classes",
    "iid_chunks",
    "image_folder",
    "load_mnist",
    "load_mnist_arrays",
    "permute_pixels",
    "permuted_mnist",
    "random_angles",
    "random_permutations",
    "rank_bins",
    "rotate",
    "rotated_mnist",
    "seq_cifar10",
    "split_mnist",
    "subsample",
    "task_incremental",
]
