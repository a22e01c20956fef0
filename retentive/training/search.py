"""The search: Syne Tune runs each trial as a local process (``LocalBackend``), ``n_workers`` at a
time; every trial is an ordinary update from the same input state into its own folder.

Schedulers (Renate's names): ``"random"`` [default], ``"bo"`` (Gaussian-process Bayesian
optimisation; Syne Tune 0.16's is BoTorch-based), ``"asha"`` (asynchronous successive halving over
epochs: trials that fall behind at a rung are stopped early), or a Syne Tune scheduler class with
``scheduler_kwargs``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retentive.quiet import quiet_search
from retentive.training.hpo_record import TrialRecord
from retentive.training.settings import JobSettings
from retentive.training.space import hpo_module, is_search
from retentive.training.trial import JOB_FILE_KEY, STATE_NAME

SCHEDULERS = ("random", "bo", "asha")
Progress = Callable[[TrialRecord, list[TrialRecord]], None]


def _has_gpu() -> bool:
    """Whether trials can be given GPUs; tells Syne Tune the count so that it does not run
    nvidia-smi into a ``std.out`` file in the current folder to find out."""
    import syne_tune.num_gpu
    import torch

    syne_tune.num_gpu._num_gpus = torch.cuda.device_count()
    return torch.cuda.is_available()


def check_scheduler(scheduler: Any) -> None:
    if scheduler is None or isinstance(scheduler, type):
        return
    if scheduler not in SCHEDULERS:
        raise ValueError(
            f"scheduler must be one of {list(SCHEDULERS)} or a Syne Tune scheduler class, got {scheduler!r}"
        )


@dataclass(frozen=True)
class SearchOptions:
    """How a job searches: trials at a time, how they are chosen, when the search stops, whether
    the trial folders are kept, and who hears of each finished trial."""

    n_workers: int = 1
    scheduler: Any = None
    scheduler_kwargs: Mapping[str, Any] | None = None
    max_time: float | None = None
    max_trials: int | None = None
    keep_trials: bool = False
    progress: Progress | None = None

    def check(self, space: Mapping[str, Any]) -> None:
        """Refuse options no search can run with, or a search of ``space`` that would never stop."""
        n_workers = self.n_workers
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be an int >= 1, got {n_workers!r}")
        check_scheduler(self.scheduler)
        if is_search(space) and self.max_time is None and self.max_trials is None:
            raise ValueError(
                "a config space with domains is a search: give max_time or max_num_trials_finished, else it never stops"
            )

    @property
    def scheduler_name(self) -> str:
        """The scheduler as the search record names it."""
        scheduler = self.scheduler
        name = scheduler if isinstance(scheduler, str) else getattr(scheduler, "__name__", "random")
        return name or "random"


def make_scheduler(
    scheduler: Any,
    space: dict[str, Any],
    metric: str,
    mode: str,
    seed: int,
    max_epochs: int,
    scheduler_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """The Syne Tune scheduler for a Renate scheduler name (or a scheduler class)."""
    from syne_tune.optimizer.baselines import ASHA, BOTorch, RandomSearch

    minimize = mode == "min"
    kwargs = dict(scheduler_kwargs or {})
    if isinstance(scheduler, type):
        return scheduler(config_space=space, metric=metric, do_minimize=minimize, random_seed=seed, **kwargs)
    if scheduler in (None, "random"):
        return RandomSearch(space, metrics=[metric], do_minimize=minimize, random_seed=seed, **kwargs)
    if scheduler == "bo":
        return BOTorch(space, metric=metric, do_minimize=minimize, random_seed=seed, **kwargs)
    # max_t one past the last epoch: ASHA stops (kills) a trial that reports max_t, which would be
    # before the trial has written its state; a trial that survives every rung finishes on its own
    return ASHA(
        space, metric=metric, time_attr="epoch", max_t=max_epochs + 1, do_minimize=minimize, random_seed=seed, **kwargs
    )


def _collector(trials: dict[int, TrialRecord], metric: str, progress: Progress | None, stdout: Any) -> Any:
    from syne_tune.tuner_callback import TunerCallback

    class Collect(TunerCallback):
        """Keeps every reported result and each trial's end; tells ``progress`` of each finish."""

        def _record(self, trial: Any) -> TrialRecord:
            config = {k: v for k, v in trial.config.items() if k != JOB_FILE_KEY}
            return trials.setdefault(trial.trial_id, TrialRecord(trial.trial_id, config))

        def on_trial_result(self, trial: Any, status: str, result: dict[str, Any], decision: str) -> None:
            record = self._record(trial)
            record.results.append({k: v for k, v in result.items() if k in (metric, "epoch", "st_worker_time")})
            if decision == "STOP":
                record.status = "Stopped"
                self._finished(record)

        def on_trial_complete(self, trial: Any, result: dict[str, Any]) -> None:
            record = self._record(trial)
            if record.status != "Stopped":
                record.status = "Completed"
                self._finished(record)

        def _finished(self, record: TrialRecord) -> None:
            if progress is not None:
                with contextlib.redirect_stdout(stdout):  # the caller's stdout, not Syne Tune's muted one
                    progress(record, sorted(trials.values(), key=lambda t: t.trial_id))

    return Collect()


def _capped(scheduler: Any, max_trials: int | None) -> Any:
    """Let ``scheduler`` suggest at most ``max_trials`` new trials; then it reports its space
    exhausted, and the tuner waits for the running trials. (Syne Tune's own trial limits are
    checked once per loop, and a loop may start a trial for every free worker, so N+1 could run.)"""
    if max_trials is None:
        return scheduler
    suggest, started = scheduler.suggest, [0]

    def capped() -> Any:
        if started[0] >= max_trials:
            return None
        suggestion = suggest()
        if suggestion is not None and suggestion.spawn_new_trial_id:
            started[0] += 1
        return suggestion

    scheduler.suggest = capped
    return scheduler


def _quiet_logger() -> Any:
    """Syne Tune's console logger with every message off: the caller's ``progress`` reports."""
    from syne_tune.tuner_logger import TunerLogger

    silent = {name: (lambda self, *args, **kwargs: None) for name in dir(TunerLogger) if name.startswith("print_")}
    return type("QuietTunerLogger", (TunerLogger,), silent)()


@contextlib.contextmanager
def _numpy_seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for the search, and put the caller's state back after.

    Syne Tune 0.16's random searcher keeps ``random_seed`` but samples with the global generator,
    so without this the same seed gives different trials on every run."""
    import numpy as np

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def _syne_tune_folder(folder: Path) -> Iterator[None]:
    """Point Syne Tune's experiment folder at ``folder`` (it would write to ~/syne-tune) for the
    duration of one search."""
    previous = os.environ.get("SYNETUNE_FOLDER")
    os.environ["SYNETUNE_FOLDER"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SYNETUNE_FOLDER", None)
        else:
            os.environ["SYNETUNE_FOLDER"] = previous


def run_search(
    space: dict[str, Any],
    job_file: Path,
    folder: Path,
    metric: str,
    mode: str,
    settings: JobSettings,
    options: SearchOptions,
) -> tuple[list[TrialRecord], dict[int, Path], Any]:
    """Run the trials; return their records, the state folder of each completed trial, and the backend."""
    hpo_module()
    from syne_tune.backend import LocalBackend

    import retentive.training.trial as trial_module

    full_space = {**space, JOB_FILE_KEY: str(job_file)}
    trials: dict[int, TrialRecord] = {}
    with _syne_tune_folder(folder):
        backend = LocalBackend(
            entry_point=str(Path(trial_module.__file__)),
            pass_args_as_json=True,
            num_gpus_per_trial=settings.devices,
            rotate_gpus=settings.accelerator not in ("cpu",) and _has_gpu(),
        )
        scheduler = make_scheduler(
            options.scheduler,
            full_space,
            metric,
            mode,
            settings.seed,
            settings.max_epochs or 50,
            options.scheduler_kwargs,
        )
        tuner = _tuner(backend, _capped(scheduler, options.max_trials), options, trials, metric)
        with contextlib.redirect_stdout(io.StringIO()), quiet_search(), _numpy_seeded(settings.seed):
            tuner.run()  # stdout: Syne Tune prints a summary of its own
    records = sorted(trials.values(), key=lambda t: t.trial_id)
    folders = {}
    for record in records:
        state = backend.checkpoint_trial_path(record.trial_id) / STATE_NAME
        if (state / "manifest.json").is_file():  # the update ran to its end and wrote its state
            folders[record.trial_id], record.status = state, "Completed"
        elif record.status != "Stopped":  # ended without a state: it failed
            record.status = "Failed"
    for trial_id in range(tuner.tuning_status.num_trials_started):
        if trial_id not in trials:
            trials[trial_id] = TrialRecord(trial_id, {}, status="Failed")
    records = sorted(trials.values(), key=lambda t: t.trial_id)
    return records, folders, backend


def _tuner(backend: Any, scheduler: Any, options: SearchOptions, trials: dict[int, TrialRecord], metric: str) -> Any:
    """Syne Tune's Tuner, quiet, collecting each finished trial into ``trials``."""
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.results_callback import StoreResultsCallback

    return Tuner(
        trial_backend=backend,
        scheduler=scheduler,
        stop_criterion=StoppingCriterion(max_wallclock_time=options.max_time),
        n_workers=options.n_workers,
        sleep_time=0.2,
        results_update_interval=3600,
        print_update_interval=3600,
        max_failures=10**6,
        tuner_name="retentive",
        save_tuner=False,
        wait_trial_completion_when_stopping=True,
        callbacks=[StoreResultsCallback(), _collector(trials, metric, options.progress, sys.stdout)],
        output_logger=_quiet_logger(),
    )


def trial_log(backend: Any, trial_id: int, lines: int = 20) -> str:
    """The last lines of a trial's stderr, for an error message."""
    path = backend.trial_path(trial_id) / "std.err"
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def choose_winner(
    records: list[TrialRecord], folders: Mapping[int, Path], metric: str, mode: str
) -> TrialRecord | None:
    """The completed trial with the best reported ``metric`` (ties: the earlier trial)."""
    scored = [
        (best, r.trial_id, r) for r in records if r.trial_id in folders and (best := r.best(metric, mode)) is not None
    ]
    if not scored:
        return None
    sign = -1.0 if mode == "max" else 1.0
    return min(scored, key=lambda item: (sign * item[0], item[1]))[2]
