"""From YAML text and ``--set`` overrides to a checked :class:`UpdateConfig` (nothing built yet)."""

from __future__ import annotations

import collections.abc
import copy
import inspect
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from retentive.cli.config.checking import (
    check_arguments,
    check_precision,
    check_spec,
    check_value,
    import_object,
    parse_spec,
    refuse_unknown,
)
from retentive.cli.config.gate import parse_gate
from retentive.cli.config.hints import describe_value, matches, suggest
from retentive.cli.config.schema import SECTIONS, TRAINER_KEYS, ConfigError, Source, Spec, UpdateConfig
from retentive.cli.config.signatures import Signature, signature_of


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses duplicate keys and reads ``1e-3`` as a float (as YAML 1.2 does)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, collections.abc.Hashable):
            if key in lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {lines[key] + 1})", key_node.start_mark
                )
            lines[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; errors name ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(source, "", f"not valid YAML: {error}") from error


def read_yaml_file(path: str | os.PathLike[str], what: str) -> Any:
    """Read and parse a YAML file (as :func:`parse_yaml`); errors name the file and ``what`` it is."""
    label = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(label, "", f"cannot read the {what}: {error}") from error
    return parse_yaml(text, label)


def parse_override(text: str, path: str) -> tuple[str, Any]:
    """``"optimizer.init_args.lr=0.01"`` -> ``("optimizer.init_args.lr", 0.01)``; the value is YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not all(part.strip() for part in key.split(".")):
        raise ConfigError(
            f"{path} (--set {text})", "", "expected --set KEY=VALUE with a dotted KEY, e.g. optimizer.init_args.lr=0.01"
        )
    return key, parse_yaml(value, f"{path} (--set {text})")


def apply_override(raw: dict[str, Any], key: str, value: Any, path: str) -> dict[str, Any]:
    """A copy of ``raw`` with the dotted ``key`` set to ``value``; missing mappings are created."""
    result = copy.deepcopy(raw)
    node = result
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(
                f"{path} (--set {key})", where, f"is {describe_value(child)}, not a mapping, so {key} cannot be set"
            )
        node = child
    node[parts[-1]] = value
    return result


# ---------------------------------------------------------------------------------------- the config


_ELSEWHERE = {
    "model": "the top-level model: section",
    "loss_fn": "the top-level loss_fn: section",
    "optimizer": "the top-level optimizer: section",
    "learning_rate_scheduler": "the top-level learning_rate_scheduler: section",
    "logger": "the top-level logger: section",
    "seed": "the top-level seed:",
    **{name: "the trainer: section" for name in TRAINER_KEYS},
    "input_state_folder": "the command line (--input-state)",
    "output_state_folder": "the command line (--output-state)",
    "resume": "the command line",
}


def method_spec(spec: Spec) -> Spec:
    """``spec`` with a registered method's name (``der``, ``DER``, ``DarkExperienceReplayModelUpdater``)
    as its ``class_path`` replaced by the method's updater import path; any other spec unchanged."""
    from retentive.methods.registry import find

    method = find(spec.class_path) if "." not in spec.class_path else None
    return spec if method is None else Spec(method.updater, spec.init_args)


def parse_config(raw: Any, source: Source) -> UpdateConfig:
    """Check a parsed YAML document (imports every class it names, builds nothing)."""
    raw = _check_sections({} if raw is None else raw, source)
    updater, updater_signature = _parse_updater(raw["updater"], source)
    trainer = _check_trainer(raw.get("trainer") or {}, updater_signature, source)

    def hint(name: str) -> Any:
        parameter = updater_signature.parameters.get(name)
        return Any if parameter is None else parameter.hint

    sections: dict[str, Spec] = {}
    for name in ("model", "loss_fn"):
        sections[name] = parse_spec(raw[name], name, source, shorthand=True)
        check_spec(sections[name], name, source, hint=hint(name))
    optimizer = parse_spec(raw["optimizer"], "optimizer", source, shorthand=True)
    check_spec(optimizer, "optimizer", source, factory=True)
    scheduler = None
    if raw.get("learning_rate_scheduler") is not None:
        scheduler = parse_spec(raw["learning_rate_scheduler"], "learning_rate_scheduler", source, shorthand=True)
        check_spec(scheduler, "learning_rate_scheduler", source, factory=True)

    logger: Spec | bool | None = raw.get("logger")
    if logger is True:
        logger = None
    if logger is not None and logger is not False:
        logger = parse_spec(logger, "logger", source, shorthand=True)
        check_spec(logger, "logger", source, hint=hint("logger"))

    seed = raw.get("seed", 0)
    if not matches(seed, int):
        raise source.error("seed", f"expected int, got {describe_value(seed)}")
    return UpdateConfig(
        source=source,
        updater=updater,
        model=sections["model"],
        loss_fn=sections["loss_fn"],
        optimizer=optimizer,
        learning_rate_scheduler=scheduler,
        trainer=dict(trainer),
        logger=logger,
        seed=int(seed),
        gate=parse_gate(raw.get("gate"), source),
    )


def _check_sections(raw: Any, source: Source) -> dict[str, Any]:
    """The document as a mapping of known sections with every required one present."""
    if not isinstance(raw, dict):
        raise source.error("", f"expected a mapping of sections ({', '.join(SECTIONS)}), got {describe_value(raw)}")
    refuse_unknown(raw, SECTIONS, "", source, "section", f"expected: {', '.join(SECTIONS)}")
    for name, required in SECTIONS.items():
        if required and raw.get(name) is None:
            raise source.error(name, "missing; a config needs updater, model, loss_fn and optimizer")
    return raw


def _parse_updater(value: Any, source: Source) -> tuple[Spec, Signature]:
    """The updater section (a registered method's name resolved) and the signature it is checked against."""
    from retentive.updaters.base import ModelUpdater

    updater = method_spec(parse_spec(value, "updater", source, shorthand=True))
    updater_class = import_object(updater.class_path, "updater.class_path", source)
    if not (inspect.isclass(updater_class) and issubclass(updater_class, ModelUpdater)):
        raise source.error("updater.class_path", f"{updater.class_path} is not a retentive ModelUpdater subclass")
    for name in updater.init_args:
        if name in _ELSEWHERE:
            raise source.error(
                f"updater.init_args.{name}", f"is set by {_ELSEWHERE[name]}, not in the updater's init_args"
            )
    updater_signature = signature_of(updater_class)
    check_arguments(updater_signature, updater.init_args, "updater.init_args", source, supplied=_ELSEWHERE)
    return updater, updater_signature


def _check_trainer(trainer: Any, updater_signature: Signature, source: Source) -> dict[str, Any]:
    """The trainer section: known Trainer settings the updater takes, each of the type it expects."""
    if not isinstance(trainer, dict):
        raise source.error("trainer", f"expected a mapping of Trainer settings, got {describe_value(trainer)}")
    for name, value in trainer.items():
        if name not in TRAINER_KEYS:
            raise source.error(
                f"trainer.{name}",
                f"unknown trainer setting{suggest(str(name), TRAINER_KEYS)}; expected one of: {', '.join(TRAINER_KEYS)}",
            )
        parameter = updater_signature.parameters.get(name)
        if parameter is None and not updater_signature.open:
            raise source.error(f"trainer.{name}", f"{updater_signature.owner} takes no {name} argument")
        check_value(value, Any if parameter is None else parameter.hint, f"trainer.{name}", source)
        if name == "precision":
            check_precision(value, f"trainer.{name}", source)
    return trainer


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> UpdateConfig:
    """Read and check a config file; ``overrides`` are ``KEY=VALUE`` strings (``--set``), applied in order."""
    label = str(path)
    raw = read_yaml_file(path, "config")
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(
            label, "", f"expected a mapping of sections ({', '.join(SECTIONS)}), got {describe_value(raw)}"
        )
    raw = raw or {}
    keys = []
    for item in overrides:
        key, value = parse_override(item, label)
        raw = apply_override(raw, key, value, label)
        keys.append(key)
    return parse_config(raw, Source(label, tuple(keys)))
