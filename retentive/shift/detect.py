"""One call from a new chunk to a verdict: :func:`detect_shift` (what ``retentive shift`` runs)."""

from __future__ import annotations

import os

from torch import nn
from torch.utils.data import Dataset

from retentive.shift.detectors import (
    KolmogorovSmirnovCovariateShiftDetector,
    LabelShiftDetector,
    MMDCovariateShiftDetector,
    ShiftDetector,
)
from retentive.shift.features import LayerFeatures
from retentive.shift.reference import memory_reference
from retentive.shift.result import ShiftResult

DETECTORS = ("mmd", "ks", "labels")


def build_detector(
    detector: str = "mmd",
    model: nn.Module | None = None,
    layer: str | None = None,
    raw_inputs: bool = False,
    predicted: bool = False,
    **options: object,
) -> ShiftDetector:
    """The detector ``detector`` ("mmd", "ks" or "labels") on ``model``'s features at ``layer``.

    ``raw_inputs`` (or no ``model``) tests the inputs themselves; ``predicted`` makes the label
    test compare ``model``'s predicted classes instead of labels. ``options`` go to the detector.
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {list(DETECTORS)}, got {detector!r}")
    if detector == "labels":
        if predicted and model is None:
            raise ValueError("the predicted-label test needs the model")
        return LabelShiftDetector(model if predicted else None, **options)  # type: ignore[arg-type]
    if predicted:
        raise ValueError(f"predicted=True applies to the 'labels' detector, not {detector!r}")
    extractor = None if raw_inputs or model is None else LayerFeatures(model, layer)
    cls = MMDCovariateShiftDetector if detector == "mmd" else KolmogorovSmirnovCovariateShiftDetector
    return cls(extractor, **options)  # type: ignore[arg-type]


def detect_shift(
    data: Dataset,
    state_folder: str | os.PathLike[str] | None = None,
    reference: Dataset | None = None,
    detector: str = "mmd",
    model: nn.Module | None = None,
    layer: str | None = None,
    raw_inputs: bool = False,
    predicted: bool = False,
    **options: object,
) -> ShiftResult:
    """Test whether ``data`` differs from the reference: ``state_folder``'s replay memory or ``reference``.

    ``model`` is used as given (load a state's weights first with
    :func:`retentive.load_model`); see :func:`build_detector` for the other arguments, e.g.
    ``alpha``, ``seed``, ``num_permutations``, ``max_samples``, ``batch_size``, ``device``.
    """
    if (state_folder is None) == (reference is None):
        raise ValueError("pass exactly one of state_folder (its replay memory is the reference) and reference")
    built = build_detector(detector, model, layer, raw_inputs, predicted, **options)
    built.fit(memory_reference(state_folder) if reference is None else reference)  # type: ignore[arg-type]
    return built.test(data)
