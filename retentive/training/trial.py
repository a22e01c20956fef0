"""One trial: an ordinary update from the job's input state into the trial's own folder, with the
monitored metric reported after every epoch.

Run in-process for a job without a search, and as Syne Tune's entry point (``python -m``-free:
``LocalBackend`` runs this file) for each trial of a search; there it reads its hyperparameters
from the JSON file Syne Tune writes and reports with ``syne_tune.Reporter``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

JOB_FILE_KEY = "retentive_job_file"  # the config-space constant naming the job's settings file
STATE_NAME = "state"  # the trial's state folder inside its checkpoint folder
Report = Callable[..., None]


def _reporter_callback(metric: str, report: Report) -> Any:
    import pytorch_lightning as pl

    from retentive.learner.metrics import best

    class ReportEpoch(pl.Callback):
        """Report ``metric`` after each training epoch (validation has run by then)."""

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.global_rank != 0:
                return
            value = best(trainer.callback_metrics, metric)
            if value is not None:
                report(epoch=trainer.current_epoch + 1, **{metric: value})

    return ReportEpoch()


def run_trial(settings: Any, values: Mapping[str, Any], output: str | Path, report: Report, log_name: str) -> Path:
    """Train one update with ``values`` and write its state to ``output``; return ``output``."""
    import torch

    from retentive.quiet import quiet_lightning
    from retentive.training.assembly import from_module, from_yaml

    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    metric = settings.watched[0]
    callbacks = [_reporter_callback(metric, report)]
    build = from_module if settings.config_file is not None else from_yaml
    job = build(settings, values, str(output), callbacks, log_name)
    if settings.yaml_config is not None and job.val is not None and job.updater.metric is None:
        job.updater.metric, job.updater.mode = settings.metric, settings.mode
    with quiet_lightning():
        job.updater.update(
            job.train,
            val_dataset=job.val,
            train_dataset_collate_fn=job.train_collate_fn,
            val_dataset_collate_fn=job.val_collate_fn,
            task_id=job.task_id,
        )
    return Path(output)


def _argument(argv: list[str], name: str) -> str:
    flag = f"--{name}"
    if flag not in argv or argv.index(flag) + 1 >= len(argv):
        raise SystemExit(f"retentive trial: missing {flag}")
    return argv[argv.index(flag) + 1]


def main(argv: list[str]) -> int:
    from syne_tune import Reporter
    from syne_tune.constants import ST_CHECKPOINT_DIR, ST_CONFIG_JSON_FNAME_ARG

    from retentive.training.settings import JobSettings

    config = json.loads(Path(_argument(argv, ST_CONFIG_JSON_FNAME_ARG)).read_text(encoding="utf-8"))
    settings = JobSettings.read(config.pop(JOB_FILE_KEY))
    checkpoints = Path(_argument(argv, ST_CHECKPOINT_DIR))  # <experiment>/<trial id>/checkpoints
    checkpoints.mkdir(parents=True, exist_ok=True)
    run_trial(settings, config, checkpoints / STATE_NAME, Reporter(), log_name=f"trial_{checkpoints.parent.name}")
    return 0


if __name__ == "__main__":
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)  # run as a file: this package's modules must not shadow top-level names
    sys.exit(main(sys.argv[1:]))
