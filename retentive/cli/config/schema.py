"""The sections of an update config, the checked config, and the error that names file and key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from retentive.errors import RetentiveError

#: top-level sections -> whether a config must have them
SECTIONS: dict[str, bool] = {
    "updater": True,
    "model": True,
    "loss_fn": True,
    "optimizer": True,
    "learning_rate_scheduler": False,
    "trainer": False,
    "logger": False,
    "seed": False,
    "gate": False,
}
#: the updater arguments that belong under ``trainer:``
TRAINER_KEYS = (
    "max_epochs",
    "accelerator",
    "devices",
    "strategy",
    "precision",
    "num_nodes",
    "enable_progress_bar",
    "log_every_n_steps",
    "num_workers",
    "callbacks",
)
#: the updater arguments the command line sets (``--input-state``, ``--output-state``, ``--resume``)
RUNTIME_KEYS = ("input_state_folder", "output_state_folder", "resume")
SPEC_KEYS = ("class_path", "init_args")


class ConfigError(RetentiveError, ValueError):
    """A config is unreadable or wrong; ``source`` names the file, ``key`` the dotted key."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


@dataclass(frozen=True)
class Source:
    """Where a config came from: its file, and the keys the command line overrode (``--set``)."""

    path: str
    overrides: tuple[str, ...] = ()

    def error(self, key: str, problem: str) -> ConfigError:
        for override in self.overrides:
            if key == override or key.startswith(override + "."):
                return ConfigError(f"{self.path} (with --set {override})", key, problem)
        return ConfigError(self.path, key, problem)


@dataclass(frozen=True)
class Spec:
    """An object to build: ``class_path`` called with ``init_args``."""

    class_path: str
    init_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateConfig:
    """A checked config; :func:`build_updater` turns it into an updater."""

    source: Source
    updater: Spec
    model: Spec
    loss_fn: Spec
    optimizer: Spec
    learning_rate_scheduler: Spec | None
    trainer: dict[str, Any]
    logger: Spec | bool | None
    seed: int
    #: the ``gate:`` section (criteria by name, ``holdout``); empty: no gate
    gate: dict[str, Any] = field(default_factory=dict)
