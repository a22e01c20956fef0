"""Shift detectors under Renate's names: ``fit(reference)`` once, then ``score(query)`` per chunk.

As in Renate, ``score`` returns ``1 - p_value`` (high means shift) and the constructor takes a
``feature_extractor`` (any ``nn.Module`` mapping a batch of inputs to features; ``None``: the raw
inputs, flattened), ``batch_size`` [32], ``num_preprocessing_workers`` [0] and ``device`` ["cpu"];
the MMD detector adds ``num_permutations`` [1000]. retentive adds :meth:`ShiftDetector.test`,
which returns the whole :class:`~retentive.shift.result.ShiftResult` (statistic, p-value,
verdict at ``alpha``), a ``seed`` that fixes every random draw (the same data give the same
result), and ``max_samples``, a seeded uniform subsample of each side for large chunks.
:class:`LabelShiftDetector` has no Renate counterpart.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from retentive.data.streaming import declared_length
from retentive.errors import DataError
from retentive.shift.features import Predictions, RawInputs, extract, labels_of
from retentive.shift.ks import ks_test
from retentive.shift.labels import chi_square_test, class_counts
from retentive.shift.mmd import mmd_test
from retentive.shift.result import ShiftResult


class ShiftDetector:
    """Base class: fit to reference data, then test query data against it."""

    #: the fewest samples each side needs
    min_samples = 2
    name = "shift"

    def __init__(
        self,
        batch_size: int = 32,
        num_preprocessing_workers: int = 0,
        device: str | torch.device = "cpu",
        seed: int = 0,
        alpha: float = 0.05,
        max_samples: int | None = None,
    ) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
        if max_samples is not None and max_samples < self.min_samples:
            raise ValueError(f"max_samples must be >= {self.min_samples} or None, got {max_samples}")
        self._batch_size = batch_size
        self._num_preprocessing_workers = num_preprocessing_workers
        self._device = device
        self.seed = seed
        self.alpha = alpha
        self.max_samples = max_samples
        self._reference: Tensor | None = None

    def _values(self, dataset: Dataset) -> Tensor:
        """What the test compares, one row per sample."""
        raise NotImplementedError

    def _test_values(self, reference: Tensor, query: Tensor, generator: torch.Generator) -> tuple[float, float, dict]:
        """``(statistic, p-value, details)`` of two (subsampled) value tensors."""
        raise NotImplementedError

    def _checked(self, dataset: Dataset, role: str) -> Tensor:
        n, values = declared_length(dataset), None
        if n is None:  # a stream of unstated length: counted as read
            values = self._values(dataset)
            n = int(values.shape[0])
        if n < self.min_samples:
            raise DataError(f"the {self.name} test needs at least {self.min_samples} {role} samples, got {n}")
        return self._values(dataset) if values is None else values

    def fit(self, dataset: Dataset) -> None:
        """Fit the detector to a reference dataset (keeps its features, or labels)."""
        self._reference = self._checked(dataset, "reference")

    def score(self, dataset: Dataset) -> float:
        """Renate's shift score of a query dataset, ``1 - p_value``: high values indicate a shift."""
        return self.test(dataset).score

    def test(self, dataset: Dataset) -> ShiftResult:
        """The two-sample test of ``dataset`` against the fitted reference."""
        if self._reference is None:
            raise RuntimeError(f"{type(self).__name__}.test/score called before fit(reference_dataset)")
        query = self._checked(dataset, "query")
        reference = self._reference
        if reference.dim() > 1 and query.shape[1:] != reference.shape[1:]:
            raise DataError(
                f"the query gives {tuple(query.shape[1:])} features per sample, the reference {tuple(reference.shape[1:])}; "
                "both must come from the same inputs and feature extractor"
            )
        generator = torch.Generator().manual_seed(self.seed)
        reference, query = self._subsample(reference, generator), self._subsample(query, generator)
        statistic, p_value, details = self._test_values(reference, query, generator)
        if self.max_samples is not None:
            details = {**details, "max_samples": self.max_samples}
        return ShiftResult(self.name, statistic, p_value, self.alpha, len(reference), len(query), details)

    def _subsample(self, values: Tensor, generator: torch.Generator) -> Tensor:
        if self.max_samples is None or len(values) <= self.max_samples:
            return values
        return values[torch.randperm(len(values), generator=generator)[: self.max_samples]]


class ShiftDetectorWithFeatureExtractor(ShiftDetector):
    """A detector on features: ``feature_extractor(x)`` per batch (``None``: raw inputs, flattened)."""

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        batch_size: int = 32,
        num_preprocessing_workers: int = 0,
        device: str | torch.device = "cpu",
        seed: int = 0,
        alpha: float = 0.05,
        max_samples: int | None = None,
    ) -> None:
        super().__init__(batch_size, num_preprocessing_workers, device, seed, alpha, max_samples)
        self._feature_extractor = (feature_extractor or RawInputs()).to(device)

    def extract_features(self, dataset: Dataset) -> Tensor:
        """``(N, D)`` features of ``dataset`` on the CPU."""
        features, _ = extract(
            self._feature_extractor, dataset, self._batch_size, self._num_preprocessing_workers, self._device
        )
        return features.reshape(features.shape[0], -1).float()

    def _values(self, dataset: Dataset) -> Tensor:
        return self.extract_features(dataset)


class MMDCovariateShiftDetector(ShiftDetectorWithFeatureExtractor):
    """Kernel MMD two-sample test (Gaussian kernel, median-heuristic bandwidth), permutation p-value.

    ``max_samples`` [2000] bounds each side (the pooled kernel matrix is ``N x N``); ``None``
    uses every sample. See :mod:`retentive.shift.mmd` for the statistic and the p-value.
    """

    name = "mmd"

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        num_permutations: int = 1000,
        batch_size: int = 32,
        num_preprocessing_workers: int = 0,
        device: str | torch.device = "cpu",
        seed: int = 0,
        alpha: float = 0.05,
        max_samples: int | None = 2000,
    ) -> None:
        if num_permutations < 1:
            raise ValueError(f"num_permutations must be >= 1, got {num_permutations}")
        super().__init__(feature_extractor, batch_size, num_preprocessing_workers, device, seed, alpha, max_samples)
        self._num_permutations = num_permutations

    def _test_values(self, reference: Tensor, query: Tensor, generator: torch.Generator) -> tuple[float, float, dict]:
        device = torch.device(self._device)
        statistic, p_value, scale = mmd_test(reference.to(device), query.to(device), self._num_permutations, generator)
        return statistic, p_value, {"lengthscale": scale, "num_permutations": self._num_permutations, "kernel": "rbf"}


class KolmogorovSmirnovCovariateShiftDetector(ShiftDetectorWithFeatureExtractor):
    """A KS test on each feature, combined with Bonferroni (Renate's choice); see :mod:`retentive.shift.ks`."""

    name = "ks"

    def _test_values(self, reference: Tensor, query: Tensor, generator: torch.Generator) -> tuple[float, float, dict]:
        return ks_test(reference, query)


class LabelShiftDetector(ShiftDetector):
    """Chi-square test of class proportions (see :mod:`retentive.shift.labels`).

    Without ``model`` it compares the datasets' labels (``dataset[i][1]``); with ``model`` it
    compares the model's predicted classes, so the query may be unlabelled. ``num_classes``
    [the largest class seen + 1] fixes the table's width.
    """

    name = "labels"

    def __init__(
        self,
        model: nn.Module | None = None,
        num_classes: int | None = None,
        batch_size: int = 32,
        num_preprocessing_workers: int = 0,
        device: str | torch.device = "cpu",
        seed: int = 0,
        alpha: float = 0.05,
        max_samples: int | None = None,
    ) -> None:
        super().__init__(batch_size, num_preprocessing_workers, device, seed, alpha, max_samples)
        self._predictor = None if model is None else Predictions(model)
        self.num_classes = num_classes
        if model is not None:
            self.name = "predicted-labels"

    def _values(self, dataset: Dataset) -> Tensor:
        if self._predictor is not None:
            predicted, _ = extract(
                self._predictor, dataset, self._batch_size, self._num_preprocessing_workers, self._device
            )
            return predicted.long()
        labels = labels_of(dataset, self._batch_size, self._num_preprocessing_workers)
        if labels is None:
            raise DataError(
                "the label test needs labelled samples (dataset[i] = (x, y, ...)); for unlabelled data "
                "pass the model, to compare its predicted classes"
            )
        return labels

    def _test_values(self, reference: Tensor, query: Tensor, generator: torch.Generator) -> tuple[float, float, dict]:
        width = self.num_classes or int(max(reference.max(), query.max())) + 1
        if int(max(reference.max(), query.max())) >= width:
            raise DataError(f"labels up to {int(max(reference.max(), query.max()))} but num_classes={width}")
        statistic, p_value, details = chi_square_test(class_counts(reference, width), class_counts(query, width))
        return (
            statistic,
            p_value,
            {**details, "test": "chi-square", "on": "predictions" if self._predictor else "labels"},
        )
