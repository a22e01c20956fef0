"""Building a checked config: the model (seeded), its collaborators and the updater."""

from __future__ import annotations

from functools import partial
from typing import Any

from retentive.cli.config.checking import import_object, is_spec, parse_spec
from retentive.cli.config.schema import RUNTIME_KEYS, Source, Spec, UpdateConfig
from retentive.errors import RetentiveError


def build(value: Any, key: str, source: Source) -> Any:
    """Build every spec inside ``value`` (lists and mappings are walked); plain values pass through."""
    if is_spec(value):
        return instantiate(parse_spec(value, key, source), key, source)
    if isinstance(value, list):
        return [build(item, f"{key}.{index}", source) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {name: build(item, f"{key}.{name}", source) for name, item in value.items()}
    return value


def _arguments(spec: Spec, key: str, source: Source) -> dict[str, Any]:
    return {name: build(value, f"{key}.init_args.{name}", source) for name, value in spec.init_args.items()}


def instantiate(spec: Spec, key: str, source: Source) -> Any:
    """Call ``spec``'s target with its (built) ``init_args``; a refusal names the key."""
    target = import_object(spec.class_path, f"{key}.class_path", source)
    arguments = _arguments(spec, key, source)
    try:
        return target(**arguments)
    except RetentiveError:
        raise
    except (TypeError, ValueError) as error:
        raise source.error(key, f"{spec.class_path} refused its init_args: {error}") from error


def factory(spec: Spec, key: str, source: Source) -> partial[Any]:
    """``partial(target, **init_args)``: an optimizer or scheduler, built later with its first argument."""
    return partial(import_object(spec.class_path, f"{key}.class_path", source), **_arguments(spec, key, source))


def build_updater(config: UpdateConfig, **runtime: Any) -> Any:
    """Build the model (seeded with ``config.seed``), its collaborators, and the updater.

    ``runtime`` holds what the command line decides: ``input_state_folder``,
    ``output_state_folder`` and ``resume``.
    """
    import torch

    unknown = sorted(set(runtime) - set(RUNTIME_KEYS))
    if unknown:
        raise TypeError(f"runtime arguments {unknown} are not among {list(RUNTIME_KEYS)}")
    source = config.source
    torch.manual_seed(config.seed)
    arguments: dict[str, Any] = {
        "model": instantiate(config.model, "model", source),
        "loss_fn": instantiate(config.loss_fn, "loss_fn", source),
        "optimizer": factory(config.optimizer, "optimizer", source),
        "seed": config.seed,
    }
    if config.learning_rate_scheduler is not None:
        arguments["learning_rate_scheduler"] = factory(
            config.learning_rate_scheduler, "learning_rate_scheduler", source
        )
    if isinstance(config.logger, Spec):
        arguments["logger"] = instantiate(config.logger, "logger", source)
    elif config.logger is False:
        arguments["logger"] = False
    arguments.update({name: build(value, f"trainer.{name}", source) for name, value in config.trainer.items()})
    arguments.update(_arguments(config.updater, "updater", source))
    arguments.update(runtime)
    return _make_updater(config, arguments)


def _make_updater(config: UpdateConfig, arguments: dict[str, Any]) -> Any:
    spec = config.updater
    target = import_object(spec.class_path, "updater.class_path", config.source)
    try:
        return target(**arguments)
    except RetentiveError:
        raise
    except (TypeError, ValueError) as error:
        raise config.source.error("updater", f"{spec.class_path} refused its arguments: {error}") from error
