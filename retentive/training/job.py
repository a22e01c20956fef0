"""``run_training_job``: Renate's entry point — one update of a model on one chunk, configured by
a Renate config module, with a hyperparameter search when the config space holds domains."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retentive.training.execution import JobResult, execute
from retentive.training.progress import epoch_lines, summary_line, trial_lines
from retentive.training.search import Progress, SearchOptions
from retentive.training.settings import JobSettings
from retentive.training.space import first_values, is_search

BACKENDS = ("local",)
MODES = ("min", "max")


def check_backend(backend: str) -> None:
    if backend == "sagemaker":
        raise ValueError(
            "backend='sagemaker' is not supported: retentive runs each trial as a local process; use "
            "backend='local' (n_workers trials in parallel on this machine), or run this job (or `retentive tune`) "
            "inside a SageMaker or other batch job of your own"
        )
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'local', got {backend!r}")


def stop_after(
    max_num_trials_started: int | None, max_num_trials_completed: int | None, max_num_trials_finished: int | None
) -> int | None:
    """How many trials a search runs: the smallest of Renate's three trial limits given."""
    given = [n for n in (max_num_trials_started, max_num_trials_completed, max_num_trials_finished) if n is not None]
    for n in given:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"a trial limit must be an int >= 1, got {n!r}")
    return min(given) if given else None


def check_metric(module: Any, space: Mapping[str, Any], settings: JobSettings) -> None:
    """Refuse a metric the learner does not log, before any trial runs."""
    from retentive.learner.metrics import check_logged_metrics, logged_metric_names
    from retentive.training.config_module import call
    from retentive.updaters.arguments import check_monitor

    if settings.mode not in MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {settings.mode!r}")
    metrics = call(module, "metrics_fn", {**settings.function_values(), **first_values(space)})
    check_monitor(settings.metric, settings.mode, logged_metric_names(check_logged_metrics(metrics)))


def prepare_data(module: Any, space: Mapping[str, Any], settings: JobSettings) -> None:
    """Renate's order: ``prepare_data()`` once in the job, then check a search has validation data."""
    from retentive.training.config_module import call

    data_module = call(
        module,
        "data_module_fn",
        {**settings.function_values(), **first_values(space)},
        data_path=str(settings.data_path),
    )
    data_module.prepare_data()
    data_module.setup()
    if is_search(space) and data_module.val_data() is None:
        raise ValueError(
            "a search chooses its winner on validation data, but data_module_fn's val_data() is None: "
            "give the data module a validation set (e.g. val_size > 0)"
        )


def run_training_job(
    mode: str,
    config_space: dict[str, Any],
    metric: str,
    backend: str,
    updater: str = "ER",
    max_epochs: int = 50,
    task_id: str | int | None = None,
    chunk_id: int | None = None,
    input_state_url: str | None = None,
    output_state_url: str | None = None,
    working_directory: str | None = None,
    config_file: str | None = None,
    max_time: float | None = None,
    max_num_trials_started: int | None = None,
    max_num_trials_completed: int | None = None,
    max_num_trials_finished: int | None = None,
    n_workers: int = 1,
    scheduler: Any = None,
    scheduler_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    accelerator: str = "auto",
    devices: int = 1,
    strategy: str = "ddp",
    precision: str = "32",
    deterministic_trainer: bool = False,
    gradient_clip_val: float | None = None,
    gradient_clip_algorithm: str | None = None,
    keep_trials: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
    **sagemaker_only: Any,
) -> JobResult:
    """Update the model on one chunk, searching hyperparameters when ``config_space`` has domains.

    Renate's arguments and defaults, but for ``working_directory``. ``config_space`` maps updater
    arguments (``memory_size``, ``alpha``, ...), Renate's optimizer settings (``optimizer``,
    ``learning_rate``, ``momentum``, ``weight_decay``) and arguments of the config module's
    functions to constants or Syne Tune domains. A search runs ``n_workers`` trials at a time, each
    an ordinary update from ``input_state_url`` into its own folder under ``working_directory``; it
    stops after ``max_num_trials_*`` trials (exactly that many run) or ``max_time`` seconds (running
    trials finish). The trial with the best ``metric`` on the data module's validation data wins and
    is promoted atomically to ``output_state_url``, with ``hpo.csv`` (every update's search,
    Renate's file) and a ``search`` record in its manifest. Trial folders are removed unless
    ``keep_trials``. ``working_directory`` means what it means in Renate (the config module's
    ``data_path`` is ``<working_directory>/data``, TensorBoard logs go to
    ``<working_directory>/logs``), and is kept; by default it is a temporary folder, removed at the
    end unless ``keep_trials`` (Renate's default, ``./renate_working_dir``, was left behind in the
    current folder). ``threads``: torch threads per trial [a search: CPU cores / n_workers].
    ``progress(trial, trials)`` is called as each trial finishes; without it the job prints one
    line per epoch (no search) or per finished trial (a search), then one naming the winner.
    SageMaker-only arguments (``role``, ``instance_type``, ...) are accepted and ignored, as Renate
    does for the local backend. Everything is checked before any trial runs (and nothing is written
    on a refusal).
    """
    from retentive.training.assembly import check_space_keys
    from retentive.training.config_module import import_config_module
    from retentive.training.locations import check_output_location, job_working_directory, localized_input
    from retentive.training.renate_names import updater_class

    check_backend(backend)
    if config_file is None:
        raise ValueError("config_file is required: the Renate config module defining model_fn and data_module_fn")
    if output_state_url is None:
        raise ValueError("output_state_url is required: where the updated state goes")
    space = dict(config_space)
    max_trials = stop_after(max_num_trials_started, max_num_trials_completed, max_num_trials_finished)
    search = SearchOptions(n_workers, scheduler, scheduler_kwargs, max_time, max_trials, keep_trials, progress)
    search.check(space)
    module = import_config_module(config_file)
    check_space_keys(list(space), module, updater_class(updater))
    printing = progress is None  # a caller's own progress replaces the lines printed here
    with job_working_directory(working_directory, keep=keep_trials) as working:
        settings = JobSettings(
            working_directory=str(working.resolve()),
            metric=metric,
            mode=mode,
            updater=updater,
            config_file=str(Path(config_file).resolve()),
            max_epochs=max_epochs,
            task_id=task_id,
            chunk_id=chunk_id,
            seed=seed,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            precision=precision,
            deterministic_trainer=deterministic_trainer,
            gradient_clip_val=gradient_clip_val,
            gradient_clip_algorithm=gradient_clip_algorithm,
            threads=threads
            if threads is not None or not is_search(space)
            else max(1, (os.cpu_count() or 1) // n_workers),
        )
        check_metric(module, space, settings)
        watched = settings.watched
        if printing and is_search(space):
            search = dataclasses.replace(search, progress=trial_lines(*watched))
        output = check_output_location(output_state_url, input_state_url)
        with localized_input(input_state_url, working) as local_input:
            settings.input_state = None if local_input is None else str(local_input.resolve())
            prepare_data(module, space, settings)
            result = execute(settings, space, output, search, epoch_lines(*watched, max_epochs) if printing else None)
    if printing:
        print(summary_line(result.winner, len(result.trials), *watched, result.seconds, output_state_url), flush=True)
    return result
