"""A Renate config module (``renate_config.py``): the functions that build a job's objects.

Required: ``model_fn`` and ``data_module_fn``. Optional: ``loss_fn`` (default: cross-entropy),
``optimizer_fn``, ``lr_scheduler_fn`` (returns ``(partial scheduler, "epoch" | "step")``),
``metrics_fn``, and the transforms ``train_transform``, ``train_target_transform``,
``test_transform``, ``test_target_transform``, ``buffer_transform``, ``buffer_target_transform``.
Each is called with the values of the config space whose keys it names as arguments (Renate's
rule); ``data_path`` and ``model_state_url`` are filled in by the job.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from retentive.errors import RetentiveError

REQUIRED = ("model_fn", "data_module_fn")
TRANSFORMS = (
    "train_transform",
    "train_target_transform",
    "test_transform",
    "test_target_transform",
    "buffer_transform",
    "buffer_target_transform",
)
OPTIONAL = ("loss_fn", "optimizer_fn", "lr_scheduler_fn", "metrics_fn", *TRANSFORMS)
#: arguments the job fills in itself, never taken from the config space
JOB_FILLED = ("data_path", "model_state_url")


class ConfigModuleError(RetentiveError, ValueError):
    """A config module cannot be imported or lacks what a job needs."""


def import_config_module(path: str | os.PathLike[str]) -> ModuleType:
    """Import ``path`` as a module and check it defines ``model_fn`` and ``data_module_fn``."""
    file = Path(path)
    if not file.is_file():
        raise ConfigModuleError(f"config_file {str(file)!r} does not exist or is not a file")
    name = f"retentive_config_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigModuleError(f"config_file {str(file)!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ConfigModuleError(
            f"config_file {str(file)!r} failed to import: {type(error).__name__}: {error}"
        ) from error
    missing = [fn for fn in REQUIRED if not callable(getattr(module, fn, None))]
    if missing:
        raise ConfigModuleError(
            f"config_file {str(file)!r} does not define {' and '.join(missing)}; a config module must define "
            f"{' and '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)})"
        )
    return module


def function_arguments(module: ModuleType) -> dict[str, tuple[str, ...]]:
    """The argument names of each config function the module defines (job-filled ones left out)."""
    names: dict[str, tuple[str, ...]] = {}
    for fn in (*REQUIRED, *OPTIONAL):
        function = getattr(module, fn, None)
        if callable(function):
            parameters = inspect.signature(function).parameters
            names[fn] = tuple(p for p in parameters if p not in JOB_FILLED)
    return names


def call(module: ModuleType, fn: str, values: Mapping[str, Any], **filled: Any) -> Any:
    """Call the module's ``fn`` with the values its arguments name; ``None`` if it is not defined."""
    function = getattr(module, fn, None)
    if not callable(function):
        return None
    parameters = inspect.signature(function).parameters
    kwargs = {key: value for key, value in values.items() if key in parameters and key not in JOB_FILLED}
    kwargs.update({key: value for key, value in filled.items() if key in parameters})
    return function(**kwargs)
