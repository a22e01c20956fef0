"""What ``run_training_job`` prints while it runs: quiet, but never silent.

A job without a search trains one update in this process: one line per epoch, with the monitored
metric. A search runs its trials in other processes: one line per finished trial. Either way, one
line at the end names the winner and where its state went. The ``retentive`` commands speak the
same way (``retentive update``: one line per update; ``retentive tune``: one per trial).
"""

from __future__ import annotations

from collections.abc import Callable

from retentive.training.hpo_record import TrialRecord
from retentive.training.trial import JOB_FILE_KEY

PREFIX = "run_training_job"
EpochProgress = Callable[[TrialRecord], None]


def _value(record: TrialRecord, metric: str, mode: str, last: bool) -> str:
    values = [r.get(metric) for r in record.results if r.get(metric) is not None]
    value = (values[-1] if values else None) if last else record.best(metric, mode)
    return "-" if value is None else f"{float(value):.4f}"


def epoch_lines(metric: str, mode: str, max_epochs: int | None) -> EpochProgress:
    """Print ``epoch k/N: <metric> <value>`` as the single trial reports each epoch."""

    def report(record: TrialRecord) -> None:
        epoch = record.results[-1].get("epoch", len(record.results)) if record.results else 0
        total = f"/{max_epochs}" if max_epochs else ""
        print(f"{PREFIX}: epoch {epoch}{total}: {metric} {_value(record, metric, mode, last=True)}", flush=True)

    return report


def trial_lines(metric: str, mode: str) -> Callable[[TrialRecord, list[TrialRecord]], None]:
    """Print one line per finished trial of a search: its values and its best ``metric``."""

    def report(trial: TrialRecord, trials: list[TrialRecord]) -> None:
        config = ", ".join(f"{k}={v}" for k, v in trial.config.items() if k != JOB_FILE_KEY)
        print(
            f"{PREFIX}: trial {trial.trial_id} {trial.status.lower()} ({config}): {metric} "
            f"{_value(trial, metric, mode, last=False)}",
            flush=True,
        )

    return report


def summary_line(winner: TrialRecord, trials: int, metric: str, mode: str, seconds: float, output: object) -> str:
    """The job's last line: the winner, its ``metric`` and where its state went."""
    best = _value(winner, metric, mode, last=False)
    return (
        f"{PREFIX}: {trials} trial{'s' if trials != 1 else ''} in {seconds:.1f} s; winner trial {winner.trial_id}, "
        f"{metric} {best}; state -> {output}"
    )
