"""A Lightning logger that keeps what an update logs, for tests that check it."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import Logger


class RecordingLogger(Logger):
    """Every ``log_metrics`` call as ``(step, metrics)`` and every ``log_hyperparams`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int | None, dict]] = []
        self.hparams: list[dict] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.hparams.append(dict(params))
