"""Renate's training-job layer: :func:`run_training_job` with a Renate config module, and
hyperparameter search across updates on Syne Tune (the ``hpo`` extra).

Importing this package imports neither Lightning nor Syne Tune; each name loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_training_job": "retentive.training.job",
    "JobResult": "retentive.training.execution",
    "RenateDataModule": "retentive.training.data_module",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'retentive.training' has no attribute {name!r}")
