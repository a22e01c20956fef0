"""Shift detectors: the Renate-named detectors (Renate's ``test_detectors.py`` and ``test_detector_base.py``
translated), features at a layer, the label test, determinism and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from retentive import KolmogorovSmirnovCovariateShiftDetector, LabelShiftDetector, MMDCovariateShiftDetector
from retentive.data.tensors import TensorChunk
from retentive.errors import DataError
from retentive.models import MLP
from retentive.shift import LayerFeatures, build_detector, detect_shift
from retentive.shift.detectors import ShiftDetectorWithFeatureExtractor

DETECTORS = [
    lambda: MMDCovariateShiftDetector(feature_extractor=None, num_permutations=100),
    lambda: KolmogorovSmirnovCovariateShiftDetector(feature_extractor=None),
]


@pytest.mark.parametrize("make", DETECTORS, ids=["mmd", "ks"])
def test_identical_data_scores_zero_and_disjoint_data_scores_high(make):
    detector = make()
    dataset = TensorDataset(torch.randn(100, 2))
    detector.fit(dataset)
    assert detector.score(dataset) == 0.0
    detector.fit(TensorDataset(torch.randn(100, 2)))
    result = detector.test(TensorDataset(torch.randn(100, 2) + 2.0))
    # Renate asserts score == 1.0; a permutation p-value is at least 1/(B+1), so MMD's is 1 - 1/101
    assert result.score == (1.0 if detector.name == "ks" else 1 - 1 / 101) and result.shift


@pytest.mark.parametrize(
    "dataset", [TensorDataset(torch.randn(20, 2)), TensorDataset(torch.randn(20, 2), torch.randint(0, 10, (20,)))]
)
def test_extract_features(dataset):
    detector = ShiftDetectorWithFeatureExtractor(feature_extractor=nn.Linear(2, 4))
    assert detector.extract_features(dataset).shape == (20, 4)


def test_penultimate_features_are_the_input_of_the_last_linear_and_a_named_layer_its_output():
    torch.manual_seed(0)
    model = MLP(in_features=6, hidden=(5, 4), num_classes=3).eval()
    x = torch.randn(7, 6)
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    captured = {}
    handle = linear[-1].register_forward_pre_hook(lambda module, args: captured.setdefault("x", args[0]))
    model(x)
    handle.remove()
    features = LayerFeatures(model)
    assert torch.equal(features(x), captured["x"]) and features(x).shape == (7, 4)
    first = next(name for name, m in model.named_modules() if isinstance(m, nn.Linear))
    assert torch.equal(LayerFeatures(model, first)(x), dict(model.named_modules())[first](x.flatten(1)))
    with pytest.raises(ValueError, match="'nope' is not a submodule of MLP"):
        LayerFeatures(model, "nope")


def test_results_are_deterministic_under_a_seed_and_subsample_large_sides():
    reference, query = TensorDataset(torch.randn(300, 5)), TensorDataset(torch.randn(400, 5) + 0.05)
    results = []
    for seed in (3, 3, 4):
        detector = MMDCovariateShiftDetector(num_permutations=200, seed=seed, max_samples=150)
        detector.fit(reference)
        results.append(detector.test(query))
    assert results[0] == results[1] and results[0].p_value != results[2].p_value
    assert (results[0].n_reference, results[0].n_query, results[0].details["max_samples"]) == (150, 150, 150)


def test_label_shift_on_labels_and_on_predicted_classes():
    labels = lambda counts: TensorChunk(
        torch.randn(sum(counts), 4),
        torch.repeat_interleave(  # noqa: E731
            torch.arange(len(counts)), torch.tensor(counts)
        ),
    )
    detector = LabelShiftDetector()
    detector.fit(labels([50, 50, 50]))
    assert not detector.test(labels([48, 52, 50])).shift
    shifted = detector.test(labels([120, 15, 15]))
    assert shifted.shift and shifted.details["dof"] == 2 and shifted.details["on"] == "labels"
    model = nn.Linear(4, 2)  # predicts class 1 exactly where x @ (w1 - w0) + b1 - b0 > 0
    predicted = LabelShiftDetector(model=model, alpha=0.01)
    direction = (model.weight[1] - model.weight[0]).detach()
    predicted.fit(TensorDataset(torch.randn(200, 4)))  # unlabelled
    result = predicted.test(TensorDataset(torch.randn(200, 4) + 3 * direction))
    assert result.detector == "predicted-labels" and result.shift


def test_nested_inputs_are_flattened_leaf_by_leaf():
    make = lambda shift: TensorChunk(
        {"a": torch.randn(60, 2) + shift, "b": torch.randn(60, 3, 2)},  # noqa: E731
        torch.zeros(60, dtype=torch.long),
    )
    detector = KolmogorovSmirnovCovariateShiftDetector()
    detector.fit(make(0.0))
    result = detector.test(make(1.5))
    assert result.details["features"] == 8 and result.details["most_shifted_feature"] in (0, 1) and result.shift


def test_bad_input_is_one_clear_error():
    detector = build_detector("mmd", MLP(in_features=6, hidden=(4,), num_classes=2), num_permutations=10)
    with pytest.raises(RuntimeError, match="before fit"):
        detector.test(TensorDataset(torch.randn(5, 6)))
    with pytest.raises(DataError, match=r"inputs \(inputs \(5,\) float32\) do not fit the feature extractor \(MLP"):
        detector.fit(TensorDataset(torch.randn(8, 5)))
    detector.fit(TensorDataset(torch.randn(8, 6)))
    with pytest.raises(DataError, match="the mmd test needs at least 2 query samples, got 1"):
        detector.test(TensorDataset(torch.randn(1, 6)))
    with pytest.raises(DataError, match="the label test needs labelled samples"):
        LabelShiftDetector().fit(TensorDataset(torch.randn(4, 2)))
    with pytest.raises(ValueError, match="exactly one of state_folder"):
        detect_shift(TensorDataset(torch.randn(4, 2)))


def test_the_label_test_reads_labels_of_any_dataset_and_nested_inputs():
    make = lambda counts: TensorDataset(
        torch.randn(sum(counts), 3),
        torch.repeat_interleave(  # noqa: E731
            torch.arange(len(counts)), torch.tensor(counts)
        ),
    )
    detector = LabelShiftDetector(num_classes=3)
    detector.fit(make([40, 40, 40]))
    via_loader = detector.test(make([80, 20, 20]))
    nested = TensorChunk({"ids": torch.zeros(120, 2, dtype=torch.long)}, make([80, 20, 20]).tensors[1])
    assert via_loader.shift and detector.test(nested) == via_loader
