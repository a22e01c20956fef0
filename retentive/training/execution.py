"""Run a checked job: one in-process update for a space of constants, a Syne Tune search for a
space with domains; then promote the winner with its record (``hpo.csv`` and the manifest)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retentive.training.hpo_record import HPO_FILE, TrialRecord, hpo_csv, manifest_record, read_history
from retentive.training.locations import promote
from retentive.training.progress import EpochProgress
from retentive.training.search import Progress, SearchOptions, choose_winner, run_search, trial_log
from retentive.training.settings import JobSettings
from retentive.training.space import constants, is_search


@dataclass
class JobResult:
    """What a job did: every trial, the winner, and where its state went."""

    output_state: Path | str  # a local folder or a URL
    metric: str
    mode: str
    winner: TrialRecord
    trials: list[TrialRecord] = field(default_factory=list)
    seconds: float = 0.0
    trials_folder: Path | None = None

    @property
    def best_config(self) -> dict[str, Any]:
        return dict(self.winner.config)


def _run_single(
    settings: JobSettings,
    space: Mapping[str, Any],
    folder: Path,
    progress: Progress | None,
    epoch_progress: EpochProgress | None = None,
) -> tuple[list[TrialRecord], dict[int, Path]]:
    from retentive.training.trial import STATE_NAME, run_trial

    record = TrialRecord(0, dict(space))
    metric = settings.watched[0]

    def report(**result: Any) -> None:
        record.results.append({k: v for k, v in result.items() if k in (metric, "epoch")})
        if epoch_progress is not None:
            epoch_progress(record)

    output = folder / "0" / STATE_NAME
    output.parent.mkdir(parents=True)
    run_trial(settings, constants(space), output, report, log_name="trial_0")
    record.status = "Completed"
    if progress is not None:
        progress(record, [record])
    return [record], {0: output}


def execute(
    settings: JobSettings,
    space: dict[str, Any],
    output: Path | str,
    options: SearchOptions,
    epoch_progress: EpochProgress | None = None,
) -> JobResult:
    """Run the trials under ``settings.working_directory`` and promote the winner to ``output``."""
    start = time.perf_counter()
    metric, mode = settings.watched
    folder = Path(settings.working_directory) / "trials" / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True)
    try:
        if is_search(space):
            records, folders, winner = _search(settings, space, folder, metric, mode, options)
        else:
            records, folders = _run_single(settings, space, folder, options.progress, epoch_progress)
            winner = records[0]
        history = read_history(settings.input_state)
        csv_bytes = hpo_csv(history, records, metric)
        name = options.scheduler_name if is_search(space) else "single"
        record = manifest_record(records, winner, metric, mode, name, csv_bytes)
        promote(folders[winner.trial_id], output, record, {HPO_FILE: csv_bytes})
    finally:
        if not options.keep_trials:
            shutil.rmtree(folder, ignore_errors=True)
    return JobResult(
        output, metric, mode, winner, records, time.perf_counter() - start, folder if options.keep_trials else None
    )


def _search(
    settings: JobSettings, space: dict[str, Any], folder: Path, metric: str, mode: str, options: SearchOptions
) -> tuple[list[TrialRecord], dict[int, Path], TrialRecord]:
    """The search's trials, the state folder of each completed one, and the winner."""
    job_file = settings.write(folder / "job.json")
    records, folders, backend = run_search(space, job_file, folder, metric, mode, settings, options)
    winner = choose_winner(records, folders, metric, mode)
    if winner is None:
        first = records[0].trial_id if records else 0
        raise RuntimeError(
            f"no trial finished with a value of {metric!r} ({len(records)} started); the log "
            f"of trial {first}:\n{trial_log(backend, first)}"
        )
    return records, folders, winner
