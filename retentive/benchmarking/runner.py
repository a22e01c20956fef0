"""Run a method on a scenario exactly as a retraining pipeline would, and measure it.

Each chunk is one ``update()`` of a freshly built updater and a freshly built model, resuming
from the state folder the previous chunk wrote (nothing is carried over in memory), and the
accuracy row after each update is measured on a model loaded back from that state folder.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from retentive.benchmarking.methods import BenchmarkMethod
from retentive.benchmarking.progress import Progress
from retentive.benchmarking.resources import Measure
from retentive.benchmarking.results import RunResult, ViewResult
from retentive.benchmarking.scenarios import Scenario
from retentive.data.tensors import TensorChunk
from retentive.evaluation import accuracy_row
from retentive.quiet import quiet_lightning
from retentive.state.loading import load_model

if TYPE_CHECKING:
    from pytorch_lightning.loggers import Logger

KEEP_STATES = ("all", "last", "none")


def _task_id(chunk: object, position: int) -> int:
    task_ids = getattr(chunk, "task_ids", None)
    return int(task_ids[0]) if task_ids is not None and len(task_ids) else position


@dataclass
class _Costs:
    """What each update of a run cost, chunk after chunk (fields named as in :class:`RunResult`)."""

    train_counts: list[int] = field(default_factory=list)
    update_seconds: list[float] = field(default_factory=list)
    samples_per_second: list[float] = field(default_factory=list)
    peak_rss_bytes: list[int] = field(default_factory=list)
    evaluation_seconds: list[float] = field(default_factory=list)
    memory_scope: str = "update"

    def record(self, measure: Measure, count: int) -> None:
        self.memory_scope = measure.scope
        self.update_seconds.append(measure.seconds)
        self.train_counts.append(count)
        self.samples_per_second.append(count / measure.seconds)
        self.peak_rss_bytes.append(measure.peak_rss_bytes)


def run_scenario(
    method: BenchmarkMethod,
    scenario: Scenario,
    seed: int,
    workdir: str | Path,
    tensorboard_dir: str | Path | None = None,
    keep_states: str = "last",
    progress: Progress | None = None,
    device: str | torch.device = "cpu",
) -> RunResult:
    """Train ``method`` on every chunk of ``scenario`` in order and return the measurements.

    State folders go to ``workdir/chunk_NNN``; ``keep_states`` keeps ``all`` of them, the
    ``last`` one (default) or ``none``. With ``tensorboard_dir`` the updates log their training
    curves under ``training/`` and the evaluation is written by the caller
    (:func:`retentive.benchmarking.tensorboard.write_run`). ``device`` is where the accuracy rows
    are measured (a GPU run evaluates on its card rather than on the host's cores).
    """
    if keep_states not in KEEP_STATES:
        raise ValueError(f"keep_states must be one of {KEEP_STATES}, got {keep_states!r}")
    workdir = Path(workdir)
    started = time.perf_counter()
    torch.manual_seed(int(seed))
    model = scenario.model_factory()
    random_init = {
        view: accuracy_row(model.to(device), scenario.test, task_aware=aware, device=device)
        for view, aware in scenario.views.items()
    }
    rows: dict[str, list[torch.Tensor]] = {view: [] for view in scenario.views}
    costs = _Costs()
    previous: Path | None = None
    if progress is not None:
        progress.start_run(f"{scenario.name} | {method.name} | {scenario.order_name} | seed {seed}")
    with quiet_lightning():
        for i in range(scenario.num_chunks):
            train = scenario.train[i]
            folder = workdir / f"chunk_{i:03d}"
            if i > 0:
                model = scenario.model_factory()  # a pipeline rebuilds the model; the state restores it
            measure = _update(method, model, train, i, previous, folder, seed, tensorboard_dir)
            costs.record(measure, len(train))
            costs.evaluation_seconds.append(_evaluate(scenario, folder, rows, device))
            if previous is not None and keep_states != "all":
                shutil.rmtree(previous)
            previous = folder
            if progress is not None:
                first = rows[next(iter(scenario.views))][-1]
                progress.update_done(i, scenario.num_chunks, measure.seconds, float(first[: i + 1].mean()))
    if keep_states == "none" and previous is not None:
        shutil.rmtree(previous)
    counts = scenario.test_counts()
    return RunResult(
        scenario=scenario.name,
        method=method.name,
        seed=int(seed),
        order=scenario.order_name,
        chunk_order=list(scenario.order),
        chunk_names=list(scenario.chunk_names),
        method_spec=method.to_dict(),
        views={view: ViewResult.from_rows(rows[view], random_init[view], counts) for view in scenario.views},
        test_counts=counts,
        **asdict(costs),
        final_state=str(previous) if keep_states != "none" and previous is not None else None,
        total_seconds=time.perf_counter() - started,
    )


def _update(
    method: BenchmarkMethod,
    model: torch.nn.Module,
    train: TensorChunk,
    position: int,
    previous: Path | None,
    folder: Path,
    seed: int,
    tensorboard_dir: str | Path | None,
) -> Measure:
    """One chunk's update by a freshly built updater, resuming from ``previous``; its cost measured."""
    logger: bool | Logger = False
    if tensorboard_dir is not None:
        from pytorch_lightning.loggers import TensorBoardLogger

        logger = TensorBoardLogger(save_dir=str(tensorboard_dir), name="", version="training")
    with Measure() as measure:
        updater = method.build(model, input_state_folder=previous, output_state_folder=folder, seed=seed, logger=logger)
        updater.update(train, task_id=_task_id(train, position))
    del updater
    return measure


def _evaluate(
    scenario: Scenario, folder: Path, rows: dict[str, list[torch.Tensor]], device: str | torch.device
) -> float:
    """Append each view's accuracy row of the model loaded back from ``folder``; the seconds it took."""
    begun = time.perf_counter()
    evaluated = load_model(scenario.model_factory(), folder).to(device)
    for view, aware in scenario.views.items():
        rows[view].append(accuracy_row(evaluated, scenario.test, task_aware=aware, device=device))
    return time.perf_counter() - begun
