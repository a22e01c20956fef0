"""A search from a ``retentive update`` YAML config: the searched values are ``--set`` overrides
of it (dotted keys), the data are chunk files. Behind ``retentive tune``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retentive.training.execution import JobResult, execute
from retentive.training.search import Progress, SearchOptions
from retentive.training.settings import JobSettings
from retentive.training.space import first_values


def check_yaml_job(settings: JobSettings, space: dict[str, Any]) -> None:
    """Every key of ``space`` is a valid override, the metric is logged, the input state loads and
    the data read: refused before any trial runs, with nothing written."""
    from retentive.cli.config import build, load_config
    from retentive.data.files import read_chunk
    from retentive.learner.metrics import check_logged_metrics, logged_metric_names
    from retentive.training.assembly import yaml_overrides
    from retentive.updaters.arguments import check_monitor

    assert settings.yaml_config is not None and settings.data is not None
    config = load_config(settings.yaml_config, [*settings.overrides, *yaml_overrides(first_values(space))])
    metrics = build(config.updater.init_args.get("logged_metrics"), "updater.init_args.logged_metrics", config.source)
    if settings.mode not in ("min", "max"):
        raise ValueError(f"--mode must be 'min' or 'max', got {settings.mode!r}")
    check_monitor(settings.metric, settings.mode, logged_metric_names(check_logged_metrics(metrics)))
    settings.max_epochs = int(config.trainer.get("max_epochs", 50))  # ASHA's largest rung
    read_chunk(settings.data)
    if settings.val_data is not None:
        read_chunk(settings.val_data)


def tune_yaml(
    config: str | os.PathLike[str],
    space: dict[str, Any],
    data: str | os.PathLike[str],
    val_data: str | os.PathLike[str],
    output_state: str | os.PathLike[str],
    input_state: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    metric: str = "val/accuracy",
    mode: str = "max",
    n_workers: int = 1,
    max_trials: int | None = None,
    max_time: float | None = None,
    scheduler: str | None = None,
    working_directory: str | os.PathLike[str] | None = None,
    seed: int = 0,
    threads: int | None = None,
    task_id: int | None = None,
    keep_trials: bool = False,
    progress: Progress | None = None,
) -> JobResult:
    """Search ``space`` (dotted config keys -> domains) for the update of ``data``; the winner by
    ``metric`` on ``val_data`` is promoted to ``output_state`` (see :func:`run_training_job`)."""
    from retentive.training.locations import check_output_location, default_working_directory, localized_input

    search = SearchOptions(n_workers, scheduler, None, max_time, max_trials, keep_trials, progress)
    search.check(space)
    output = check_output_location(output_state, input_state)
    working = (
        Path(working_directory)
        if working_directory is not None
        else default_working_directory(output, ".retentive-tune-")
    )
    with localized_input(input_state, working) as local_input:
        settings = JobSettings(
            working_directory=str(working.resolve()),
            metric=metric,
            mode=mode,
            yaml_config=str(Path(config).resolve()),
            overrides=list(overrides),
            data=str(Path(data).resolve()),
            val_data=str(Path(val_data).resolve()),
            max_epochs=None,
            task_id=task_id,
            input_state=None if local_input is None else str(local_input.resolve()),
            seed=seed,
            threads=threads if threads is not None else max(1, (os.cpu_count() or 1) // n_workers),
        )
        check_yaml_job(settings, space)
        try:
            return execute(settings, space, output, search)
        finally:
            for folder in (working / "trials", working):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
