"""Distribution-shift detection: does a new chunk differ from what the model has seen, and how much?

Covariate shift on features (a named layer, by default the penultimate) or raw inputs: kernel MMD
with a permutation test (:mod:`~retentive.shift.mmd`) and per-feature Kolmogorov–Smirnov with a
Bonferroni correction (:mod:`~retentive.shift.ks`); label shift on class proportions, true or
predicted (:mod:`~retentive.shift.labels`). The reference is a state folder's replay memory
(:mod:`~retentive.shift.reference`) or any dataset. Renate's detector names and arguments are in
:mod:`~retentive.shift.detectors`.
"""

from retentive.shift.detect import DETECTORS, build_detector, detect_shift
from retentive.shift.detectors import (
    KolmogorovSmirnovCovariateShiftDetector,
    LabelShiftDetector,
    MMDCovariateShiftDetector,
    ShiftDetector,
    ShiftDetectorWithFeatureExtractor,
)
from retentive.shift.features import LayerFeatures, Predictions, RawInputs
from retentive.shift.reference import memory_reference
from retentive.shift.result import ShiftResult

__all__ = [
    "DETECTORS",
    "KolmogorovSmirnovCovariateShiftDetector",
    "LabelShiftDetector",
    "LayerFeatures",
    "MMDCovariateShiftDetector",
    "Predictions",
    "RawInputs",
    "ShiftDetector",
    "ShiftDetectorWithFeatureExtractor",
    "ShiftResult",
    "build_detector",
    "detect_shift",
    "memory_reference",
]
