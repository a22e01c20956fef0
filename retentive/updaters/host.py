"""What the ModelUpdater's mixins read from the ModelUpdater, declared once for the type checker.

:class:`~retentive.updaters.base.ModelUpdater` is split over files:
:mod:`~retentive.updaters.hooks`, :mod:`~retentive.updaters.persistence` and
:mod:`~retentive.updaters.fitting` each hold a mixin that uses the attributes
``ModelUpdater.__init__`` sets and the other mixins' methods. Each mixin
inherits :class:`UpdaterHost` only under ``TYPE_CHECKING``; at runtime they derive from ``object``
and the ModelUpdater's method resolution order is unchanged. Nothing here runs: ``import
retentive.updaters.host`` defines no names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Sequence
    from pathlib import Path
    from typing import Any

    import pytorch_lightning as pl
    from pytorch_lightning.loggers import Logger
    from torch import nn
    from torch.utils.data import Dataset

    from retentive.gates.heldout import HeldOut
    from retentive.gates.report import GateReport
    from retentive.learner import Learner
    from retentive.memory.protocol import ReplayMemory
    from retentive.state import State
    from retentive.state.locking import OutputLock
    from retentive.state.remote.locations import StateLocations
    from retentive.updaters.hooks import Fit

    class UpdaterHost:
        """The ModelUpdater's attributes (set in ``ModelUpdater.__init__``) and the methods one
        mixin calls on another or on the ModelUpdater."""

        model: nn.Module
        memory: ReplayMemory
        learner: Learner
        logger: Logger | None
        hyperparameters: dict[str, Any]
        trainer_kwargs: dict[str, Any]
        callbacks: list[pl.Callback]
        in_place: bool
        resume: bool
        input_state_folder: Path | None
        output_state_folder: Path | None
        state_locations: StateLocations
        world_size: int
        global_rank: int
        effective_precision: str | None
        metric: str | None
        mode: str
        early_stopping_enabled: bool
        new_batch_size: int
        memory_batch_size: int
        num_workers: int
        seed: int
        updates_done: int
        tasks_seen: dict[str, int]
        task_order: list[int | str]
        chunk_size: int | None
        streamed_samples: int
        state_version: str | None
        memory_insertion: str
        memory_input_dtype: str | None
        memory_backend: str
        memory_dir: str | os.PathLike[str] | None
        refresh_memory_metadata: bool
        heldout: HeldOut
        gate_report: GateReport | None

        _version_at_call: str | None
        _lineage_inputs: dict[str, Any]

        def _put_back(self, backup: tuple[Any, ...]) -> None: ...
        def _snapshot(self) -> tuple[Any, ...]: ...
        def _state(self) -> State: ...
        def _apply_state(self, state: State, folder: Path | None) -> None: ...
        def _begin_lineage(self, train_dataset: Any, update: int, task: int | str) -> None: ...
        def _check_unchanged(self, fate: str) -> None: ...
        def _interrupt_messages(self) -> tuple[str | None, str | None]: ...
        def _committed_in_call(self) -> bool: ...
        def _save(self, lock: OutputLock | None) -> None: ...
        def fit(self, fit: Fit, seed: int, window: Any = None) -> None: ...
        def batches(self, dataset: Dataset, task_id: int | str, batch_size: int = 1024) -> Iterator[Any]: ...
        # the extension points (retentive.updaters.hooks)
        def steps_per_epoch(self, world_size: int) -> int | None: ...
        def adapt_model(self, tasks: Sequence[int | str]) -> None: ...
        def fits(self, train_dataset: Dataset, val_dataset: Dataset | None, task_id: int) -> Iterator[Fit]: ...
        def fill_memory(self, train_dataset: Dataset, task_id: int) -> None: ...
        def manifest_entries(self) -> dict[str, Any]: ...
        def migrate_state(self, state: State) -> State: ...
