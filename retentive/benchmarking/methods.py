"""Benchmark methods: a method's label -> an updater, its optimizer and its arguments.

A :class:`BenchmarkMethod` is plain data (so it prints, saves to JSON and loads from YAML) and builds a fresh updater
for each chunk, as a pipeline does. The DER paper's tuned settings at memory 500 ship as
:data:`PROTOCOLS`, one method set per benchmark family. A YAML file holds more methods::

    er:                                   # the method's name in tables and paths
      updater: ExperienceReplayModelUpdater   # a registered method's name (er, ER, ...) or "package.module.Class"
      optimizer: SGD                      # a class in torch.optim, or "package.module.Class"
      optimizer_args: {lr: 0.1}
      args: {memory_size: 500, batch_size: 10, memory_batch_size: 10, loss_normalization: false}
    der:                                  # or the sections of an update config (configs/*.yaml)
      updater: {class_path: retentive.DarkExperienceReplayModelUpdater, init_args: {memory_size: 500}}
      optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.03}}
      trainer: {max_epochs: 1}

Either form is checked by :func:`check_method`, with the checker ``retentive update --config``
uses, before anything runs.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from retentive.updaters.base import ModelUpdater

SPEC_KEYS = ("updater", "optimizer", "optimizer_args", "args")
#: Arguments the harness sets itself for every update; a spec may not set them.
RESERVED_ARGS = ("model", "loss_fn", "optimizer", "input_state_folder", "output_state_folder", "seed", "logger")


def _import_path(name: str, what: str) -> Any:
    """The object at the dotted import path ``name``; a ValueError naming ``what`` if it is not there."""
    module_name, _, attribute = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{what} {name!r} could not be imported: {error}") from error


def _resolve_updater(name: str) -> type[ModelUpdater]:
    if "." in name:
        cls = _import_path(name, "updater")
    else:  # a name a registered method answers to: der, DER, DarkExperienceReplayModelUpdater
        from retentive.methods.registry import all_methods, find

        spec = find(name)
        if spec is None:
            known = sorted(spec.class_name for spec in all_methods())
            raise ValueError(
                f"unknown updater {name!r}; expected a method name, one of {known}, or a dotted import path"
            )
        cls = spec.updater_class()
    if not (isinstance(cls, type) and issubclass(cls, ModelUpdater)):
        raise ValueError(f"updater {name!r} is not a ModelUpdater subclass")
    return cls


def _resolve_optimizer(name: str) -> type:
    """A class in :mod:`torch.optim` by name (``SGD``), or any optimizer class by import path."""
    cls = _import_path(name, "optimizer") if "." in name else getattr(torch.optim, name, None)
    if not isinstance(cls, type):
        raise ValueError(f"unknown optimizer {name!r}; expected a class in torch.optim or a dotted import path")
    return cls


@dataclass(frozen=True)
class BenchmarkMethod:
    """One continual-learning method as the benchmark runs it.

    Args:
        name: the label in tables, files and TensorBoard.
        updater: a name a registered method answers to (:mod:`retentive.methods`: ``der``, ``DER``,
            ``DarkExperienceReplayModelUpdater``), or a dotted import path.
        optimizer: a class name in :mod:`torch.optim`.
        optimizer_args: its keyword arguments (``lr``, ``momentum``, ...).
        args: the updater's keyword arguments (``memory_size``, ``batch_size``, ``alpha``, ...).
    """

    name: str
    updater: str
    optimizer: str = "SGD"
    optimizer_args: Mapping[str, Any] = field(default_factory=dict)
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or os.sep in self.name:
            raise ValueError(f"a method name must be non-empty and contain no path separator, got {self.name!r}")
        reserved = sorted(set(self.args) & set(RESERVED_ARGS))
        if reserved:
            raise ValueError(f"method {self.name!r}: the benchmark sets {reserved} itself; remove them from args")
        try:
            _resolve_optimizer(self.optimizer)
        except ValueError as error:
            raise ValueError(f"method {self.name!r}: {error}") from error
        _resolve_updater(self.updater)

    @property
    def updater_class(self) -> type[ModelUpdater]:
        return _resolve_updater(self.updater)

    def build(
        self,
        model: nn.Module,
        *,
        input_state_folder: str | os.PathLike[str] | None,
        output_state_folder: str | os.PathLike[str] | None,
        seed: int,
        logger: Any = False,
        loss_fn: nn.Module | None = None,
        **overrides: Any,
    ) -> ModelUpdater:
        """A fresh updater for one chunk, resuming from ``input_state_folder``."""
        kwargs: dict[str, Any] = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}
        kwargs.update(self.args)
        kwargs.update(overrides)
        optimizer_class = _resolve_optimizer(self.optimizer)
        return self.updater_class(
            model=model,
            loss_fn=loss_fn if loss_fn is not None else nn.CrossEntropyLoss(),
            optimizer=partial(optimizer_class, **dict(self.optimizer_args)),
            input_state_folder=input_state_folder,
            output_state_folder=output_state_folder,
            seed=seed,
            logger=logger,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "updater": self.updater,
            "optimizer": self.optimizer,
            "optimizer_args": dict(self.optimizer_args),
            "args": dict(self.args),
        }

    @classmethod
    def from_dict(cls, name: str, spec: Mapping[str, Any]) -> BenchmarkMethod:
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"method {name!r} must be a mapping with keys {list(SPEC_KEYS)}, got {type(spec).__name__}"
            )
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise ValueError(f"method {name!r} has unknown keys {unknown}; expected {list(SPEC_KEYS)}")
        if "updater" not in spec:
            raise ValueError(f"method {name!r} needs an 'updater'")
        for key in ("optimizer_args", "args"):
            if not isinstance(spec.get(key, {}), Mapping):
                raise ValueError(f"method {name!r}: {key} must be a mapping, got {spec[key]!r}")
        return cls(
            name=str(name),
            updater=str(spec["updater"]),
            optimizer=str(spec.get("optimizer", "SGD")),
            optimizer_args=dict(spec.get("optimizer_args", {})),
            args=dict(spec.get("args", {})),
        )


CONFIG_FORM_KEYS = ("updater", "optimizer", "trainer")


def from_config_form(name: str, spec: Mapping[str, Any], source: Any) -> dict[str, Any]:
    """A method written as the sections of an update config (``updater`` and ``optimizer`` as
    ``class_path``/``init_args``, optional ``trainer``), in the short form; one description of a
    method serves both ``retentive update --config`` and ``retentive benchmark --methods-file``."""
    from retentive.cli.config import parse_spec
    from retentive.cli.config.checking import refuse_unknown
    from retentive.cli.config.hints import describe_value

    refuse_unknown(
        spec,
        CONFIG_FORM_KEYS,
        name,
        source,
        "section",
        f"a method takes {', '.join(CONFIG_FORM_KEYS)} (the model, loss and data are the scenario's)",
    )
    updater = parse_spec(spec["updater"], f"{name}.updater", source, shorthand=True)
    optimizer = parse_spec(spec.get("optimizer") or "torch.optim.SGD", f"{name}.optimizer", source, shorthand=True)
    trainer = spec.get("trainer") or {}
    if not isinstance(trainer, Mapping):
        raise source.error(f"{name}.trainer", f"expected a mapping of Trainer settings, got {describe_value(trainer)}")
    path = optimizer.class_path
    short = path[len("torch.optim.") :] if path.startswith("torch.optim.") and path.count(".") == 2 else path
    return {
        "updater": updater.class_path,
        "optimizer": short,
        "optimizer_args": dict(optimizer.init_args),
        "args": {**dict(updater.init_args), **dict(trainer)},
    }


def check_method(name: str, spec: Any, source: Any, config_form: bool = False) -> None:
    """Check one method of a methods file with the checker ``retentive update --config`` uses.

    Its updater is imported and each of ``args`` is checked by name and type against the updater's
    signature (following ``**kwargs`` to its parents), ``optimizer_args`` against the optimizer's;
    an error is a :class:`~retentive.cli.config.ConfigError` naming the file and the dotted key
    (``my-er.args.memory_sise: unknown argument ... (did you mean 'memory_size'?)``).
    """
    from retentive.cli.config import check_arguments, signature_of
    from retentive.cli.config.checking import refuse_unknown
    from retentive.cli.config.hints import describe_value

    if not isinstance(spec, Mapping):
        raise source.error(name, f"expected a mapping with keys {', '.join(SPEC_KEYS)}, got {describe_value(spec)}")
    refuse_unknown(spec, SPEC_KEYS, name, source, "keys", f"expected {', '.join(SPEC_KEYS)}")
    if not isinstance(spec.get("updater"), str):
        raise source.error(
            f"{name}.updater",
            f"needs a registered method's name or a dotted import path, got {describe_value(spec.get('updater'))}",
        )
    try:
        updater = _resolve_updater(spec["updater"])
    except ValueError as error:
        raise source.error(f"{name}.updater", str(error)) from error
    for key in ("optimizer_args", "args"):
        if not isinstance(spec.get(key, {}), Mapping):
            raise source.error(f"{name}.{key}", f"expected a mapping, got {describe_value(spec.get(key))}")
    args = dict(spec.get("args", {}))
    for key in args:
        if key in RESERVED_ARGS:
            raise source.error(f"{name}.args.{key}", "is set by the benchmark for every update; remove it")
    args_key, optimizer_key = (
        (f"{name}.updater.init_args", f"{name}.optimizer.init_args")
        if config_form
        else (f"{name}.args", f"{name}.optimizer_args")
    )
    check_arguments(signature_of(updater), args, args_key, source, supplied=RESERVED_ARGS)
    optimizer = spec.get("optimizer", "SGD")
    try:
        optimizer_class = _resolve_optimizer(optimizer if isinstance(optimizer, str) else repr(optimizer))
    except ValueError as error:
        raise source.error(f"{name}.optimizer", str(error)) from error
    check_arguments(
        signature_of(optimizer_class, skip_first=True), dict(spec.get("optimizer_args", {})), optimizer_key, source
    )


def load_methods(path: str | os.PathLike[str]) -> dict[str, BenchmarkMethod]:
    """Read a YAML file of ``name: {updater, optimizer, optimizer_args, args}`` entries, each checked
    by :func:`check_method` before anything runs (so a misspelled argument costs no training)."""
    from retentive.cli.config import ConfigError, Source
    from retentive.cli.config.parsing import read_yaml_file

    label = str(path)
    data = read_yaml_file(path, "methods file")
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(label, "", f"must map method names to specs, got {type(data).__name__}")
    source = Source(label)
    short = {}
    for name, spec in data.items():
        config_form = isinstance(spec, Mapping) and isinstance(spec.get("updater"), Mapping)
        if config_form:
            spec = from_config_form(str(name), spec, source)
        check_method(str(name), spec, source, config_form)
        short[str(name)] = spec
    try:
        return {name: BenchmarkMethod.from_dict(name, spec) for name, spec in short.items()}
    except ValueError as error:
        raise ConfigError(label, "", str(error)) from error


def _der(updater: str, lr: float, batch: int, memory_batch: int | None = None, **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"batch_size": batch, "max_epochs": 1, "loss_normalization": False}
    if memory_batch is not None:
        args.update(memory_size=500, memory_batch_size=memory_batch)
    args.update(extra)
    return {"updater": updater, "optimizer": "SGD", "optimizer_args": {"lr": lr}, "args": args}


def _protocol(entries: Mapping[str, dict[str, Any]]) -> Mapping[str, BenchmarkMethod]:
    return MappingProxyType({name: BenchmarkMethod.from_dict(name, spec) for name, spec in entries.items()})


#: The DER paper's best settings at memory 500 (Buzzega et al. 2020; Mammoth's ``best_args``):
#: SGD without momentum, one epoch, B new + M memory samples. DER/DER++ use the plain loss sum, as
#: Mammoth does; Mammoth's ER takes one cross-entropy over the concatenated new and memory batch,
#: which for B == M is exactly Renate's normalised total (CE_new + CE_memory) / 2.
PROTOCOLS: Mapping[str, Mapping[str, BenchmarkMethod]] = MappingProxyType(
    {
        "seq-mnist": _protocol(
            {
                "fine-tuning": _der("FineTuningModelUpdater", 0.03, 10),
                "er": _der("ExperienceReplayModelUpdater", 0.1, 10, 10, alpha=1.0, loss_normalization=True),
                "der": _der("DarkExperienceReplayModelUpdater", 0.03, 10, 128, alpha=1.0, beta=0.0),
                "der++": _der("DarkExperienceReplayModelUpdater", 0.03, 10, 10, alpha=1.0, beta=0.5),
            }
        ),
        "perm-mnist": _protocol(
            {
                "fine-tuning": _der("FineTuningModelUpdater", 0.2, 128),
                "er": _der("ExperienceReplayModelUpdater", 0.2, 128, 128, alpha=1.0, loss_normalization=True),
                "der": _der("DarkExperienceReplayModelUpdater", 0.2, 128, 128, alpha=1.0, beta=0.0),
                "der++": _der("DarkExperienceReplayModelUpdater", 0.2, 128, 128, alpha=1.0, beta=0.5),
            }
        ),
        # Seq-CIFAR-10: 50 epochs of 32 new + 32 memory samples (Mammoth's best_args at memory 500).
        "seq-cifar10": _protocol(
            {
                "fine-tuning": _der("FineTuningModelUpdater", 0.1, 32, max_epochs=50),
                "er": _der(
                    "ExperienceReplayModelUpdater", 0.1, 32, 32, alpha=1.0, loss_normalization=True, max_epochs=50
                ),
                "der": _der("DarkExperienceReplayModelUpdater", 0.03, 32, 32, alpha=0.3, beta=0.0, max_epochs=50),
                "der++": _der("DarkExperienceReplayModelUpdater", 0.03, 32, 32, alpha=0.2, beta=0.5, max_epochs=50),
            }
        ),
        "rot-mnist": _protocol(
            {
                "fine-tuning": _der("FineTuningModelUpdater", 0.2, 128),
                "er": _der("ExperienceReplayModelUpdater", 0.2, 128, 128, alpha=1.0, loss_normalization=True),
                "der": _der("DarkExperienceReplayModelUpdater", 0.2, 128, 128, alpha=0.5, beta=0.0),
                "der++": _der("DarkExperienceReplayModelUpdater", 0.2, 128, 128, alpha=0.5, beta=1.0),
            }
        ),
    }
)
