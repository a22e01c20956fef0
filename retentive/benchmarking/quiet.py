"""Keep Lightning's per-Trainer banners and hints out of a benchmark's output."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

_NOISY_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning")
_NOISY_WARNINGS = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*LeafSpec.*",
    ".*no `val_dataloader`.*",
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Raise Lightning's loggers to WARNING and drop its data-loader hints, then restore both."""
    levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    try:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            for message in _NOISY_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
