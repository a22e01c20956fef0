"""What one training job fixes for all of its trials, as plain JSON-able data.

A job is either a Renate config module (``config_file``: ``model_fn``, ``data_module_fn``, ...)
or a retentive update config (``yaml_config``: the YAML ``retentive update`` reads, with the data
given as chunk files). Trials read it from the job file the search writes once.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class JobSettings:
    """A job's fixed settings (Renate's ``run_training_job`` arguments that are not searched)."""

    working_directory: str
    metric: str | None
    mode: str
    updater: str = "ER"
    config_file: str | None = None
    yaml_config: str | None = None
    overrides: list[str] = field(default_factory=list)
    data: str | None = None
    val_data: str | None = None
    max_epochs: int | None = 50
    task_id: str | int | None = None
    chunk_id: int | None = None
    input_state: str | None = None
    seed: int = 0
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "ddp"
    precision: str = "32"
    deterministic_trainer: bool = False
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str | None = None
    threads: int | None = None

    @property
    def watched(self) -> tuple[str, str]:
        """The metric the trials are judged and reported by, and its mode: the job's own, else the
        training loss, minimised."""
        return (self.metric, self.mode) if self.metric else ("train_loss", "min")

    @property
    def data_path(self) -> Path:
        """The ``data_path`` a config module's ``data_module_fn`` gets (Renate's layout)."""
        return Path(self.working_directory) / "data"

    @property
    def logs_path(self) -> Path:
        return Path(self.working_directory) / "logs"

    def function_values(self) -> dict[str, Any]:
        """The job settings a config function may name as arguments (``chunk_id``, ``seed``, ...)."""
        return {
            "chunk_id": self.chunk_id,
            "seed": self.seed,
            "task_id": self.task_id,
            "max_epochs": self.max_epochs,
            "updater": self.updater,
        }

    def write(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> JobSettings:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))
