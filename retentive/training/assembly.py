"""Turn a job's settings and one trial's hyperparameters into an updater and its data.

Shared by the single in-process run and by every trial process, so a search's trial trains
exactly as a plain job with those values would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from retentive.training.config_module import TRANSFORMS, call, function_arguments, import_config_module
from retentive.training.renate_names import OPTIMIZER_KEYS, RENAMED, make_optimizer, updater_class
from retentive.training.settings import JobSettings

#: updater arguments a config space may not set: the job decides them
RESERVED = frozenset(
    {
        "model",
        "loss_fn",
        "optimizer",
        "input_state_folder",
        "output_state_folder",
        "logger",
        "callbacks",
        "resume",
        "logged_metrics",
        "learning_rate_scheduler",
        "learning_rate_scheduler_interval",
        "metric",
        "mode",
        "enable_progress_bar",
        *TRANSFORMS,
    }
)
#: updater arguments the job's own arguments set (the job's value wins, as in Renate)
FROM_JOB = (
    "max_epochs",
    "seed",
    "accelerator",
    "devices",
    "strategy",
    "precision",
    "deterministic_trainer",
    "gradient_clip_val",
    "gradient_clip_algorithm",
)


@dataclass
class Assembled:
    """What one update needs: the updater and the chunk (with Renate's collate functions)."""

    updater: Any
    train: Any
    val: Any
    train_collate_fn: Any = None
    val_collate_fn: Any = None
    task_id: Any = None


def updater_arguments(cls: type) -> set[str]:
    """The arguments of ``cls`` a config space may set."""
    from retentive.cli.config.signatures import signature_of

    return set(signature_of(cls).parameters) - RESERVED


def check_space_keys(keys: Sequence[str], module: ModuleType, cls: type) -> None:
    """Refuse a config-space key that is neither an argument of the updater, one of Renate's
    optimizer settings, nor an argument of a config-module function."""
    functions = function_arguments(module)
    allowed = updater_arguments(cls) | set(OPTIMIZER_KEYS) | set(RENAMED)
    for names in functions.values():
        allowed |= set(names)
    unknown = sorted(key for key in keys if key not in allowed)
    if unknown:
        raise ValueError(
            f"config_space keys {unknown} are not arguments of {cls.__name__}, Renate's optimizer settings "
            f"({', '.join(OPTIMIZER_KEYS)}) or of the config module's functions; expected some of "
            f"{sorted(allowed)}"
        )


def _updater_values(values: Mapping[str, Any], cls: type) -> dict[str, Any]:
    allowed = updater_arguments(cls)
    renamed = {RENAMED.get(key, key): value for key, value in values.items()}
    return {key: value for key, value in renamed.items() if key in allowed and key not in FROM_JOB}


def _job_arguments(settings: JobSettings) -> dict[str, Any]:
    arguments = {name: getattr(settings, name) for name in FROM_JOB}
    if arguments["max_epochs"] is None:
        del arguments["max_epochs"]
    return arguments


def _logger(settings: JobSettings, name: str) -> Any:
    from pytorch_lightning.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=str(settings.logs_path), name=name)


def from_module(
    settings: JobSettings, values: Mapping[str, Any], output: str, callbacks: Sequence[Any], log_name: str
) -> Assembled:
    """Build from a Renate config module: data module, model, loss, optimizer, scheduler, metrics,
    transforms, then the updater named by ``settings.updater``."""
    import torch

    assert settings.config_file is not None
    module = import_config_module(settings.config_file)
    cls = updater_class(settings.updater)
    given = {**settings.function_values(), **values}
    data_module = call(module, "data_module_fn", given, data_path=str(settings.data_path))
    data_module.setup()
    torch.manual_seed(settings.seed)
    model = call(module, "model_fn", given, model_state_url=None)  # weights come from the input state
    loss_fn = call(module, "loss_fn", given) or torch.nn.CrossEntropyLoss(reduction="none")
    optimizer = call(module, "optimizer_fn", given) or make_optimizer(dict(values))
    arguments: dict[str, Any] = {name: call(module, name, given) for name in TRANSFORMS if hasattr(module, name)}
    scheduler = call(module, "lr_scheduler_fn", given)
    if scheduler is not None:
        arguments["learning_rate_scheduler"], arguments["learning_rate_scheduler_interval"] = scheduler
    val = data_module.val_data()
    updater = cls(
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        logged_metrics=call(module, "metrics_fn", given),
        input_state_folder=settings.input_state,
        output_state_folder=output,
        metric=settings.metric if val is not None else None,
        mode=settings.mode,
        logger=_logger(settings, log_name),
        enable_progress_bar=False,
        callbacks=list(callbacks),
        **_job_arguments(settings),
        **_updater_values(values, cls),
        **arguments,
    )
    return Assembled(
        updater,
        data_module.train_data(),
        val,
        data_module.train_collate_fn(),
        data_module.val_collate_fn(),
        settings.task_id,
    )


def yaml_overrides(values: Mapping[str, Any]) -> list[str]:
    """Searched values as ``--set KEY=VALUE`` overrides (VALUE as YAML)."""
    import json

    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def from_yaml(
    settings: JobSettings, values: Mapping[str, Any], output: str, callbacks: Sequence[Any], log_name: str
) -> Assembled:
    """Build from a ``retentive update`` YAML config, with the searched values as ``--set`` overrides."""
    from retentive.cli.config import build_updater, load_config
    from retentive.data.files import read_chunk

    assert settings.yaml_config is not None and settings.data is not None
    config = load_config(settings.yaml_config, [*settings.overrides, *yaml_overrides(values)])
    if config.logger is None:  # no TensorBoard runs of parallel trials racing in ./tb_logs unasked
        config = dataclasses.replace(config, logger=False)
    updater = build_updater(config, input_state_folder=settings.input_state, output_state_folder=output)
    updater.callbacks = [*getattr(updater, "callbacks", []), *callbacks]
    train = read_chunk(settings.data)
    val = None if settings.val_data is None else read_chunk(settings.val_data)
    return Assembled(updater, train, val, task_id=settings.task_id)
