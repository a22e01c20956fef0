"""Named benchmark scenarios: the chunks, the model they train, and how they are evaluated.

A scenario is built per seed, since the seed fixes its random choices (the permutations and
angles of the domain-IL benchmarks, the subsets of a quick run). Each names the DER-protocol
method set it uses (:data:`retentive.benchmarking.methods.PROTOCOLS`) and its evaluation views:
``view -> task_aware``, where a task-aware view restricts each chunk's prediction to its own
classes (the DER paper's Task-IL for a single-head model).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from types import MappingProxyType

import torch
from torch import nn

from retentive.data.cifar import CLASSES as CIFAR10_CLASSES
from retentive.data.cifar import cifar10, ensure_cifar10
from retentive.data.domains import LazyChunks, permuted_mnist, rotated_mnist
from retentive.data.mnist import ensure_mnist, load_mnist
from retentive.data.scenarios import (
    SEQ_CIFAR10_CLASSES,
    SPLIT_MNIST_CLASSES,
    class_incremental,
    data_incremental,
    group_classes,
    iid_chunks,
    rank_bins,
    subsample,
)
from retentive.data.tensors import TensorChunk
from retentive.models.mlp import MLP
from retentive.models.multihead import MultiHeadClassifier
from retentive.models.resnet import ResNet18


@dataclass(frozen=True)
class Scenario:
    """Train and test chunks (chunk ``j`` of each is the same task), a model factory and views."""

    name: str
    train: Sequence[TensorChunk]
    test: Sequence[TensorChunk]
    model_factory: Callable[[], nn.Module]
    views: Mapping[str, bool]
    protocol: str
    chunk_names: tuple[str, ...]
    order: tuple[int, ...] = ()
    order_name: str = "given"
    seed: int = 0

    def __post_init__(self) -> None:
        if not (len(self.train) == len(self.test) == len(self.chunk_names)):
            raise ValueError(
                f"scenario {self.name!r}: {len(self.train)} train chunks, {len(self.test)} test chunks and "
                f"{len(self.chunk_names)} names must agree"
            )
        if not self.views:
            raise ValueError(f"scenario {self.name!r} needs at least one evaluation view")
        if not self.order:
            object.__setattr__(self, "order", tuple(range(len(self.train))))

    @property
    def num_chunks(self) -> int:
        return len(self.train)

    def test_counts(self) -> list[int]:
        return [len(chunk) for chunk in self.test]

    def reordered(self, order: Sequence[int], order_name: str) -> Scenario:
        """The same chunks in another order; each chunk keeps its task id (its head, if any)."""
        order = [int(i) for i in order]
        if sorted(order) != list(range(self.num_chunks)):
            raise ValueError(f"order {order} must be a permutation of 0..{self.num_chunks - 1}")
        train, test = self.train, self.test
        return replace(
            self,
            train=LazyChunks(lambda i: train[order[i]], len(order)),
            test=LazyChunks(lambda i: test[order[i]], len(order)),
            chunk_names=tuple(self.chunk_names[i] for i in order),
            order=tuple(self.order[i] for i in order),
            order_name=order_name,
        )


@dataclass(frozen=True)
class ScenarioOptions:
    """Size knobs: ``num_tasks`` (chunks; None: the benchmark's own number), and at most
    ``train_per_chunk`` / ``test_per_chunk`` samples per chunk (None: all), for quick runs."""

    num_tasks: int | None = None
    train_per_chunk: int | None = None
    test_per_chunk: int | None = None
    data_root: str | os.PathLike[str] | None = None


Builder = Callable[[TensorChunk, TensorChunk, int, ScenarioOptions], Scenario]


@dataclass(frozen=True)
class ScenarioInfo:
    builder: Builder
    description: str
    views: tuple[str, ...] = field(default=())
    dataset: str = "mnist"  # the key of DATASETS that the builder's train and test come from


def _subsampled(chunks: Sequence[TensorChunk], n: int | None, seed: int) -> list[TensorChunk]:
    return [subsample(c, n, seed=seed * 1009 + i) for i, c in enumerate(chunks)]


def _class_groups(train: TensorChunk, options: ScenarioOptions) -> list[list[int]]:
    if options.num_tasks is None or options.num_tasks == len(SPLIT_MNIST_CLASSES):
        return [list(g) for g in SPLIT_MNIST_CLASSES]
    return group_classes(torch.unique(train.targets).tolist(), options.num_tasks)


def _seq_mnist(train: TensorChunk, test: TensorChunk, seed: int, options: ScenarioOptions) -> Scenario:
    groups = _class_groups(train, options)
    return Scenario(
        name="seq-mnist",
        train=_subsampled(class_incremental(train, groups, with_task_ids=True), options.train_per_chunk, seed),
        test=_subsampled(class_incremental(test, groups, with_task_ids=True), options.test_per_chunk, seed + 1),
        model_factory=MLP,
        views=MappingProxyType({"class-il": False, "task-il": True}),
        protocol="seq-mnist",
        chunk_names=tuple("digits " + ",".join(map(str, g)) for g in groups),
        seed=seed,
    )


def _seq_mnist_til(train: TensorChunk, test: TensorChunk, seed: int, options: ScenarioOptions) -> Scenario:
    groups = _class_groups(train, options)
    base = _seq_mnist(train, test, seed, options)
    return replace(
        base,
        name="seq-mnist-til",
        model_factory=partial(MultiHeadClassifier.mlp, groups, num_classes=10),
        views=MappingProxyType({"task-il": False}),
    )


def _seq_cifar10(train: TensorChunk, test: TensorChunk, seed: int, options: ScenarioOptions) -> Scenario:
    groups = [list(g) for g in SEQ_CIFAR10_CLASSES]
    if options.num_tasks is not None and options.num_tasks != len(groups):
        groups = group_classes(range(10), options.num_tasks)
    return Scenario(
        name="seq-cifar10",
        train=_subsampled(class_incremental(train, groups, with_task_ids=True), options.train_per_chunk, seed),
        test=_subsampled(class_incremental(test, groups, with_task_ids=True), options.test_per_chunk, seed + 1),
        model_factory=ResNet18,  # the paper's: CIFAR stem, nf=64
        views=MappingProxyType({"class-il": False, "task-il": True}),
        protocol="seq-cifar10",
        chunk_names=tuple(" and ".join(CIFAR10_CLASSES[c] for c in g) for g in groups),
        seed=seed,
    )


def _domain(kind: str, train: TensorChunk, test: TensorChunk, seed: int, options: ScenarioOptions) -> Scenario:
    tasks = options.num_tasks or 20
    make = permuted_mnist if kind == "perm-mnist" else rotated_mnist
    # Every task transforms the same base images; a quick run takes the same subset for each task.
    train_base = subsample(train, options.train_per_chunk, seed=seed * 1009)
    test_base = subsample(test, options.test_per_chunk, seed=seed * 1009 + 1)
    train_chunks = make(train_base, num_tasks=tasks, seed=seed)
    # The test chunks are read once per update: keep them (20 x 10,000 images, ~630 MB in float32).
    test_chunks = make(test_base, num_tasks=tasks, seed=seed, cache=True)
    return Scenario(
        name=kind,
        train=train_chunks,
        test=test_chunks,
        model_factory=MLP,
        views=MappingProxyType({"domain-il": False}),
        protocol=kind,
        chunk_names=tuple(train_chunks.names),
        seed=seed,
    )


def _iid(train: TensorChunk, test: TensorChunk, seed: int, options: ScenarioOptions) -> Scenario:
    tasks = options.num_tasks or 5
    train_chunks = iid_chunks(train, tasks, seed=seed, with_task_ids=True)
    test_chunks = iid_chunks(test, tasks, seed=seed + 1, with_task_ids=True)
    return Scenario(
        name="mnist-iid",
        train=_subsampled(train_chunks, options.train_per_chunk, seed),
        test=_subsampled(test_chunks, options.test_per_chunk, seed + 1),
        model_factory=MLP,
        views=MappingProxyType({"iid": False}),
        protocol="seq-mnist",
        chunk_names=tuple(f"random part {i}" for i in range(tasks)),
        seed=seed,
    )


def _data_incremental(train: TensorChunk, test: TensorChunk, seed: int, options: ScenarioOptions) -> Scenario:
    """Digits arriving from the faintest to the heaviest strokes: a gradual covariate shift."""
    tasks = options.num_tasks or 5
    train_ink = train.inputs.flatten(1).mean(dim=1)
    train_bins = rank_bins(train_ink, tasks)
    edges = torch.stack([train_ink[train_bins == b].max() for b in range(tasks - 1)])
    test_bins = torch.bucketize(test.inputs.flatten(1).mean(dim=1), edges, right=True)
    return Scenario(
        name="mnist-data-inc",
        train=_subsampled(data_incremental(train, train_bins, with_task_ids=True), options.train_per_chunk, seed),
        test=_subsampled(data_incremental(test, test_bins, with_task_ids=True), options.test_per_chunk, seed + 1),
        model_factory=MLP,
        views=MappingProxyType({"data-il": False}),
        protocol="seq-mnist",
        chunk_names=tuple(f"ink quantile {b + 1}/{tasks}" for b in range(tasks)),
        seed=seed,
    )


SCENARIOS: Mapping[str, ScenarioInfo] = MappingProxyType(
    {
        "seq-mnist": ScenarioInfo(
            _seq_mnist,
            "Split-MNIST class-IL: 5 chunks of 2 digits, single-head MLP; also read task-aware (Task-IL)",
            ("class-il", "task-il"),
        ),
        "seq-mnist-til": ScenarioInfo(
            _seq_mnist_til, "Split-MNIST task-IL: the same chunks, one head per task routed by task id", ("task-il",)
        ),
        "perm-mnist": ScenarioInfo(
            partial(_domain, "perm-mnist"), "Permuted-MNIST domain-IL: 20 tasks, one pixel shuffle each", ("domain-il",)
        ),
        "rot-mnist": ScenarioInfo(
            partial(_domain, "rot-mnist"),
            "Rotated-MNIST domain-IL: 20 tasks, one angle in [0, 180) each",
            ("domain-il",),
        ),
        "mnist-iid": ScenarioInfo(_iid, "MNIST in 5 random (IID) chunks: more data of the same distribution", ("iid",)),
        "mnist-data-inc": ScenarioInfo(
            _data_incremental, "MNIST data-incremental: 5 chunks by stroke ink, faint to heavy", ("data-il",)
        ),
        "seq-cifar10": ScenarioInfo(
            _seq_cifar10,
            "Seq-CIFAR-10 class-IL: 5 chunks of 2 classes, single-head ResNet-18; also read task-aware (Task-IL)",
            ("class-il", "task-il"),
            dataset="cifar10",
        ),
    }
)


def load_mnist_pair(data_root: str | os.PathLike[str] | None = None) -> tuple[TensorChunk, TensorChunk]:
    """MNIST train and test, read once and shared by every scenario built from them."""
    return load_mnist("train", root=data_root), load_mnist("test", root=data_root)


def load_cifar10_pair(data_root: str | os.PathLike[str] | None = None) -> tuple[TensorChunk, TensorChunk]:
    """CIFAR-10 train and test as float32 images in [0, 1], read once and shared by every scenario."""
    return cifar10(data_root, train=True).as_float(), cifar10(data_root, train=False).as_float()


#: Each dataset a scenario may be built from: how to load its train and test, and how a command
#: makes sure it is on the machine (fetching it when missing) before any work starts.
DATASETS: Mapping[str, tuple[Callable[..., tuple[TensorChunk, TensorChunk]], Callable[..., None]]] = MappingProxyType(
    {"mnist": (load_mnist_pair, ensure_mnist), "cifar10": (load_cifar10_pair, ensure_cifar10)}
)


def ensure_data(names: Sequence[str], data_root: str | os.PathLike[str] | None = None) -> None:
    """Make sure the data of every scenario in ``names`` can be read (what commands call first)."""
    for dataset in dict.fromkeys(SCENARIOS[name].dataset for name in names if name in SCENARIOS):
        DATASETS[dataset][1](data_root)


def scenario_data(
    names: Sequence[str], data_root: str | os.PathLike[str] | None = None
) -> dict[str, tuple[TensorChunk, TensorChunk]]:
    """Train and test of each scenario in ``names``, every dataset loaded once."""
    loaded: dict[str, tuple[TensorChunk, TensorChunk]] = {}
    for name in names:
        dataset = SCENARIOS[name].dataset
        if dataset not in loaded:
            loaded[dataset] = DATASETS[dataset][0](data_root)
    return {name: loaded[SCENARIOS[name].dataset] for name in names}


def build_scenario(
    name: str,
    seed: int = 0,
    options: ScenarioOptions | None = None,
    data: tuple[TensorChunk, TensorChunk] | None = None,
) -> Scenario:
    """Build scenario ``name`` for ``seed`` (``data``: its dataset's train/test already loaded)."""
    info = SCENARIOS.get(name)
    if info is None:
        raise ValueError(f"unknown scenario {name!r}; expected one of {sorted(SCENARIOS)}")
    options = options or ScenarioOptions()
    for label, value in (
        ("num_tasks", options.num_tasks),
        ("train_per_chunk", options.train_per_chunk),
        ("test_per_chunk", options.test_per_chunk),
    ):
        if value is not None and value < 1:
            raise ValueError(f"{label} must be >= 1, got {value}")
    train, test = data if data is not None else DATASETS[info.dataset][0](options.data_root)
    return info.builder(train, test, int(seed), options)
