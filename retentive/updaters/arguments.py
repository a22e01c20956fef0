"""What an updater is built with: the checks of its flat arguments, the step's batch split, the
Learner's and the Trainer's settings drawn from them, Renate's device rules, and how the record of
its arguments (:mod:`~retentive.updaters.signature`) becomes the manifest's hyperparameters, the
resume fingerprint and TensorBoard's hparams."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from retentive.components.base import Component
from retentive.learner.metrics import check_logged_metrics, logged_metric_names
from retentive.memory.backends import BACKENDS

DEFAULT_BATCH_MEMORY_FRAC = 0.5

#: constructor arguments that say where and how to run, not what is learned: not hyperparameters
NOT_HYPERPARAMETERS = frozenset(
    {
        "model",
        "input_state_folder",
        "output_state_folder",
        "logger",
        "callbacks",
        "enable_progress_bar",
        "resume",
        "logged_metrics",
        "memory_backend",
        "memory_dir",
    }
)


def check_count(name: str, value: Any, minimum: int, hint: str = "") -> int:
    """``value`` if it is an int (not a bool) >= ``minimum``, else a ValueError naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}{hint}")
    return value


def split_batch(
    batch_size: int, memory_size: int, batch_memory_frac: float | None, memory_batch_size: int | None
) -> tuple[int, int]:
    """Return ``(new samples, memory samples)`` per step.

    Renate's convention (default): ``batch_size`` is the whole step and ``batch_memory_frac`` of
    it comes from memory: ``m = min(memory_size, int(frac * batch_size))``, ``new = batch_size - m``.
    The DER paper's convention (e.g. 10 new + 128 memory): pass ``memory_batch_size``; then
    ``batch_size`` counts the new samples alone and ``m = min(memory_size, memory_batch_size)``.
    """
    check_count("batch_size", batch_size, 1)
    if memory_batch_size is not None:
        if batch_memory_frac is not None:
            raise ValueError(
                "pass either batch_memory_frac (Renate's split) or memory_batch_size (new + memory), not both"
            )
        if memory_batch_size < 0:
            raise ValueError(f"memory_batch_size must be >= 0, got {memory_batch_size}")
        return batch_size, min(memory_size, memory_batch_size)
    frac = DEFAULT_BATCH_MEMORY_FRAC if batch_memory_frac is None else float(batch_memory_frac)
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"batch_memory_frac must lie in [0, 1), got {frac}")
    memory = min(memory_size, int(frac * batch_size))
    if batch_size - memory < 1:
        raise ValueError(f"batch_size={batch_size} with batch_memory_frac={frac} leaves no room for new samples")
    return batch_size - memory, memory


def plain(value: Any) -> Any:
    """A JSON-able record of a hyperparameter (callables by their qualified name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    func = getattr(value, "func", None)  # functools.partial
    if func is not None:
        return {"callable": getattr(func, "__qualname__", repr(func)), "kwargs": plain(getattr(value, "keywords", {}))}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "__qualname__"):  # a function or a class
        return value.__qualname__
    settings = {k: plain(v) for k, v in vars(value).items() if not k.startswith("_") and _isplain(v)}
    if isinstance(value, Component):
        settings = {"weight": value.weight, **settings}
    return {"class": type(value).__qualname__, **settings} if settings else type(value).__qualname__


def _isplain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_isplain(v) for v in value)


# ---------------------------------------------------------------- Renate's arguments
#: Renate 0.5.2's defaults (renate/defaults.py), which retentive's updaters share
RENATE_MAX_EPOCHS = 50
RENATE_STRATEGY = "ddp"
RENATE_DEVICES = 1
RENATE_TASK_ID = "default_task"
MODES = ("min", "max")


def _device_count(devices: Any) -> int | None:
    """How many devices ``devices`` names, or ``None`` when Lightning decides ("auto", -1)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices if devices > 0 else None
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        text = devices.strip()
        if text.isdigit():
            return int(text)
        if "," in text:
            return len([part for part in text.split(",") if part.strip()])
    return None


def resolve_devices_strategy(devices: Any, strategy: Any, num_nodes: int) -> tuple[Any, Any]:
    """Renate's device rules, for Lightning 2: ``devices=None`` means one device; on one device
    and one node the strategy is ignored and training runs in this process (Renate's
    ``create_strategy`` returns no strategy there, so its default ``"ddp"`` costs nothing); with
    several devices ``strategy=None`` means ``"ddp"``."""
    devices = RENATE_DEVICES if devices is None else devices
    single = _device_count(devices) == 1 and num_nodes == 1
    if strategy is None:
        strategy = "auto" if single else "ddp"
    elif single and isinstance(strategy, str) and strategy in ("ddp", "ddp_find_unused_parameters_false"):
        strategy = "auto"
    return devices, strategy


def check_monitor(metric: str | None, mode: str, names: Sequence[str]) -> None:
    """Refuse a ``metric`` that is never logged and a ``mode`` other than min/max."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if metric is not None and metric not in names:
        raise ValueError(f"metric {metric!r} is not logged; expected one of {', '.join(names)}")


def check_task_id(task_id: Any) -> int | str | None:
    """A task id as Renate takes it (a non-empty string) or as retentive does (an int >= 0)."""
    if task_id is None:
        return None
    if isinstance(task_id, str):
        if not task_id.strip():
            raise ValueError(f"task_id must be a non-empty string or an int >= 0, got {task_id!r}")
        return task_id
    if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id < 0:
        raise ValueError(f"task_id must be a non-empty string or an int >= 0, got {task_id!r}")
    return task_id


MEMORY_INSERTION = ("step", "update_end")

#: the Learner's settings that are the updater's arguments of the same name
_LEARNER_ARGUMENTS = (
    "loss_fn",
    "optimizer",
    "loss_weight",
    "loss_normalization",
    "ema_memory_update_gamma",
    "mask_unused_classes",
    "log_every_n_steps",
    "train_transform",
    "train_target_transform",
    "test_transform",
    "test_target_transform",
    "learning_rate_scheduler_interval",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "logged_metrics",
)


def check_arguments(arguments: Mapping[str, Any]) -> bool:
    """Refuse what no updater can run with, before anything is built; returns whether early
    stopping is on (it is off, with a warning, when no metric is monitored)."""
    model, optimizer, memory_size = arguments["model"], arguments["optimizer"], arguments["memory_size"]
    max_epochs, metric, insertion = arguments["max_epochs"], arguments["metric"], arguments["memory_insertion"]
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(optimizer):
        raise TypeError(f"optimizer must be a callable taking the parameters, got {type(optimizer).__name__}")
    check_count("memory_size", memory_size, 0)
    check_count("max_epochs", max_epochs, 1)
    check_monitor(metric, arguments["mode"], logged_metric_names(check_logged_metrics(arguments["logged_metrics"])))
    if arguments["resume"] and arguments["output_state_folder"] is None:
        raise ValueError("resume=True needs an output_state_folder: the checkpoints are kept beside it")
    if insertion not in MEMORY_INSERTION:
        raise ValueError(f"memory_insertion must be one of {MEMORY_INSERTION}, got {insertion!r}")
    if arguments["memory_backend"] not in BACKENDS:
        raise ValueError(f"memory_backend must be one of {list(BACKENDS)}, got {arguments['memory_backend']!r}")
    if arguments["early_stopping_enabled"] and metric is None:
        warnings.warn(
            "early_stopping_enabled=True without a metric to monitor: early stopping is off (as in Renate)",
            stacklevel=3,
        )
        return False
    return bool(arguments["early_stopping_enabled"])


def learner_settings(arguments: Mapping[str, Any], components: Sequence[Component]) -> dict[str, Any]:
    """The :class:`~retentive.learner.Learner` keyword arguments the updater's arguments give
    (but the model, the memory and its batch, which the updater passes itself)."""
    train, train_target = arguments["train_transform"], arguments["train_target_transform"]
    buffer, buffer_target = arguments["buffer_transform"], arguments["buffer_target_transform"]
    return {
        **{name: arguments[name] for name in _LEARNER_ARGUMENTS},
        "components": list(components),
        "lr_scheduler": arguments["learning_rate_scheduler"],
        "update_memory_every_step": arguments["memory_insertion"] == "step",
        # Renate's rule: replayed samples get the training transforms unless told otherwise
        "buffer_transform": train if buffer is None else buffer,
        "buffer_target_transform": train_target if buffer_target is None else buffer_target,
    }


def trainer_settings(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The Lightning Trainer's settings the updater's arguments give (Renate's device rules applied)."""
    devices, strategy = resolve_devices_strategy(arguments["devices"], arguments["strategy"], arguments["num_nodes"])
    return {
        "max_epochs": arguments["max_epochs"],
        "accelerator": arguments["accelerator"],
        "devices": devices,
        "strategy": strategy,
        "precision": arguments["precision"],
        "num_nodes": arguments["num_nodes"],
        "enable_progress_bar": arguments["enable_progress_bar"],
        "deterministic": bool(arguments["deterministic_trainer"]),
    }
