"""One TensorBoard run per update, on one step axis that continues from update to update.

Each update builds a new Lightning ``Trainer``, whose own step count starts at 0: the per-epoch
names Lightning logs for the Learner (``train_loss``, ``val_loss``, ``epoch``, ...) would restart
at every update while retentive's own (``loss/*``, ``val/accuracy``) continue, so chunks would
overlap on the step axis. :class:`ContinuedStep` starts the Trainer's logging step at the
Learner's step count, kept in the state folder, and :func:`log_hyperparameters` puts
TensorBoard's ``hp_metric`` at the update's first step, so every name lands on one axis.

A TensorBoard run is named after the update's output state folder (``chunk_3``), not Lightning's
``version_N``: :func:`default_logger` builds the updater's default logger so, and
:func:`name_run` gives a :class:`TensorBoardLogger` passed without a ``version`` the same name.
:func:`plain_progress_bar` is Lightning's default bar less its ``v_num`` field (the run's version, which says
nothing about training).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from pytorch_lightning.loggers import Logger, TensorBoardLogger

DEFAULT_SAVE_DIR = "tb_logs"


def run_name(output: str | os.PathLike[str] | None) -> str | None:
    """The run's name: the last part of the output state folder or URL (``None``: none given)."""
    if output is None:
        return None
    name = Path(str(output).rstrip("/")).name
    return name or None


def default_logger(updater: str, output: str | os.PathLike[str] | None) -> TensorBoardLogger:
    """``tb_logs/<updater>/<output state name>`` (``version_N`` when the update saves no state)."""
    return TensorBoardLogger(save_dir=DEFAULT_SAVE_DIR, name=updater, version=run_name(output))


def name_run(logger: Logger | bool | None, output: str | os.PathLike[str] | None) -> None:
    """Give a TensorBoard logger that was passed without a version, and has not started writing,
    the output state's name as its version (its run folder)."""
    name = run_name(output)
    unnamed = isinstance(logger, TensorBoardLogger) and logger._version is None and logger._experiment is None
    if unnamed and name is not None:
        logger._version = name  # type: ignore[union-attr]


def log_hyperparameters(logger: Logger, hyperparameters: dict[str, Any], steps_before: int) -> None:
    """The update's hyperparameters; TensorBoard's placeholder ``hp_metric`` goes at the update's
    first step, not at step 0 of every run."""
    if isinstance(logger, TensorBoardLogger):
        logger.log_hyperparams(hyperparameters, step=steps_before + 1)
    else:
        logger.log_hyperparams(hyperparameters)


class ContinuedStep(pl.Callback):
    """Starts the Trainer's logging step at the Learner's ``total_steps`` (the steps of every
    earlier update), so that the names Lightning logs continue across updates as retentive's do."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.fit_loop.epoch_loop._batches_that_stepped = int(getattr(pl_module, "total_steps", 0))


class _WithoutVersion(ProgressBar):
    """A progress bar's fields less ``v_num``."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = dict(super().get_metrics(trainer, pl_module))
        metrics.pop("v_num", None)
        return metrics


class PlainRichProgressBar(_WithoutVersion, RichProgressBar):
    """Lightning's default bar where ``rich`` is installed, without ``v_num``."""


class PlainTQDMProgressBar(_WithoutVersion, TQDMProgressBar):
    """Lightning's default bar without ``rich``, without ``v_num``."""


def plain_progress_bar() -> ProgressBar:
    """The bar Lightning would show (rich's where installed, else tqdm's), without ``v_num``."""
    from pytorch_lightning.callbacks.progress.rich_progress import _RICH_AVAILABLE

    return PlainRichProgressBar() if _RICH_AVAILABLE else PlainTQDMProgressBar()


def run_callbacks(enable_progress_bar: bool, callbacks: Sequence[pl.Callback]) -> list[pl.Callback]:
    """The callbacks every fit adds: the continued step, and the progress bar unless the caller
    passed a bar of their own (or turned it off)."""
    added: list[pl.Callback] = [ContinuedStep()]
    if enable_progress_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
        added.append(plain_progress_bar())
    return added
