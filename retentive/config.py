"""YAML configs -> an updater, with ``class_path`` / ``init_args`` as in LightningCLI.

Every object is named by its import path, so any importable class (or function) can be used::

    updater:                    # required: a ModelUpdater subclass and its own arguments
      class_path: retentive.DarkExperienceReplayModelUpdater
      init_args: {memory_size: 500, alpha: 0.5, beta: 0.5}
    model:                      # required: called with init_args; any nn.Module returning logits
      class_path: retentive.models.MLP
    loss_fn:                    # required
      class_path: torch.nn.CrossEntropyLoss
    optimizer:                  # required: partial(class, **init_args), later called with the parameters
      class_path: torch.optim.SGD
      init_args: {lr: 0.1}
    learning_rate_scheduler:    # optional: partial(class, **init_args), later called with the optimizer
    trainer: {max_epochs: 1}    # optional: the updater's Trainer settings (TRAINER_KEYS)
    logger:                     # optional: a logger spec; false: none; absent: TensorBoard in tb_logs/
    seed: 0                     # optional: seeds the model's initialisation and every update

Inside ``init_args`` a mapping with a ``class_path`` is itself built (e.g. a list of components).
Arguments are checked against the signature and type hints of what they are passed to — following
``**kwargs`` to the parent classes' ``__init__``, as the updaters pass them on — before anything is
built, and every error names the file and the dotted key. A config names code to run: treat it
like a script, unlike a state folder, which never runs code.
"""

from __future__ import annotations

import collections.abc
import copy
import difflib
import importlib
import inspect
import os
import re
import types
import typing
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Union

import yaml

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


# ---------------------------------------------------------------------------------------- YAML


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


# ---------------------------------------------------------------------------------------- types


def _is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False)) and not getattr(cls, "_is_runtime_protocol", False)


def _isinstance(value: Any, cls: type) -> bool:
    if _is_protocol(cls):
        return True
    try:
        return isinstance(value, cls)
    except TypeError:  # a class isinstance cannot check
        return True


_SEQUENCES = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
    collections.abc.Collection,
    collections.abc.Set,
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_UNIONS = (Union, types.UnionType)


def _is_callable_hint(hint: Any) -> bool:
    return hint in (collections.abc.Callable, typing.Callable) or typing.get_origin(hint) is collections.abc.Callable


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (a YAML value, or a built object) fits the type hint ``hint``.

    Hints it cannot judge (unresolved names, type variables, exotic generics) accept anything; a
    bool is not an int, an int is a float.
    """
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, (typing.TypeVar, str)):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNIONS:
        return any(matches(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if _is_callable_hint(hint):
        return callable(value)
    if origin in _SEQUENCES:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
            return False
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        return not args or all(matches(v, args[0]) for v in value)
    if origin in _MAPPINGS:
        if not isinstance(value, dict):
            return False
        return len(args) != 2 or all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
    if origin is not None:
        return _isinstance(value, origin) if inspect.isclass(origin) else True
    if inspect.isclass(hint):
        return _isinstance(value, hint)
    return True


def may_build(target: Any, hint: Any) -> bool:
    """Whether calling ``target`` (a class or function named by a ``class_path``) may give a ``hint``.

    Only classes are judged; what a function returns is known when it is called.
    """
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, (typing.TypeVar, str)):
        return True
    origin = typing.get_origin(hint)
    if origin in _UNIONS:
        return any(may_build(target, arg) for arg in typing.get_args(hint))
    if not inspect.isclass(target):
        return True
    if hint is None or hint is type(None) or origin is Literal:
        return False
    if _is_callable_hint(hint):
        return any("__call__" in klass.__dict__ for klass in target.__mro__ if klass is not object)
    cls = origin if origin is not None else hint
    if not inspect.isclass(cls) or _is_protocol(cls):
        return True
    try:
        return issubclass(target, cls)
    except TypeError:
        return True


def describe(hint: Any) -> str:
    """A type hint as a reader would write it: ``int``, ``float | None``, ``list[int]``."""
    if hint is Any or hint is inspect.Parameter.empty:
        return "any value"
    if hint is None or hint is type(None):
        return "null"
    if hint is Ellipsis:
        return "..."
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _UNIONS:
        return " | ".join(dict.fromkeys(describe(arg) for arg in args))
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if _is_callable_hint(hint):
        return "a callable"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(describe(arg) for arg in args)}]" if args else name
    if inspect.isclass(hint):
        return hint.__name__
    return str(hint).replace("typing.", "")


def describe_value(value: Any) -> str:
    """A value as the error message shows it: its YAML-ish type and a short repr."""
    if value is None:
        return "null"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _suggest(name: str, options: Collection[str]) -> str:
    close = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Parameter:
    """A keyword argument a callable takes."""

    name: str
    hint: Any
    required: bool


@dataclass(frozen=True)
class Signature:
    """The keyword arguments of a callable; ``open``: it takes others that cannot be listed."""

    owner: str
    parameters: dict[str, Parameter]
    open: bool


def _initializers(target: Any) -> Iterator[tuple[Any, bool]]:
    """``(function, is_method)``: a function itself, or a class's ``__init__`` along its MRO."""
    if not inspect.isclass(target):
        yield target, False
        return
    for klass in target.__mro__:
        if klass is object:
            return
        init = klass.__dict__.get("__init__")
        if init is not None:
            yield init, True


def _hints(function: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # names that only exist for type checkers: judge those arguments as Any
        return {}


def signature_of(target: Any, skip_first: bool = False) -> Signature:
    """The keyword arguments ``target`` accepts, following ``**kwargs`` up the MRO of a class.

    ``skip_first`` leaves out the first positional parameter: the one a factory is later called
    with (an optimizer's parameters, a scheduler's optimizer). Only the target's own parameters
    without a default are required; a parent's may be filled in by the child. A name the child
    leaves unannotated (``Any``) takes the parent's hint, as the child passes it on.
    """
    owner = getattr(target, "__qualname__", None) or type(target).__name__
    parameters: dict[str, Parameter] = {}
    for depth, (function, is_method) in enumerate(_initializers(target)):
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # a builtin without a signature
            return Signature(owner, parameters, True)
        hints = _hints(function)
        listed = list(signature.parameters.values())[1 if is_method else 0 :]
        if depth == 0 and skip_first:
            positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            if listed and listed[0].kind in positional:
                listed = listed[1:]
        takes_more = False
        for p in listed:
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                takes_more = True
            elif p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
                hint = hints.get(p.name, Any)
                known = parameters.get(p.name)
                if known is None:
                    required = depth == 0 and p.default is inspect.Parameter.empty
                    parameters[p.name] = Parameter(p.name, hint, required)
                elif known.hint is Any and hint is not Any:  # a child passing it on unannotated
                    parameters[p.name] = Parameter(p.name, hint, known.required)
        if not takes_more:
            return Signature(owner, parameters, False)
    return Signature(owner, parameters, True)


# ---------------------------------------------------------------------------------------- specs


def is_spec(value: Any) -> bool:
    """A mapping with a ``class_path``: an object to build."""
    return isinstance(value, dict) and "class_path" in value


def parse_spec(value: Any, key: str, source: Source, shorthand: bool = False) -> Spec:
    """Check a ``{class_path, init_args}`` mapping (or, with ``shorthand``, a bare class path)."""
    if shorthand and isinstance(value, str):
        value = {"class_path": value}
    if not isinstance(value, dict):
        raise source.error(key, f"expected a mapping with class_path and init_args, got {describe_value(value)}")
    for name in value:
        if name not in SPEC_KEYS:
            raise source.error(f"{key}.{name}", f"unknown key{_suggest(name, SPEC_KEYS)}; expected class_path and init_args")
    class_path = value.get("class_path")
    if not isinstance(class_path, str) or not class_path:
        raise source.error(f"{key}.class_path", f"expected an import path like torch.optim.SGD, got {describe_value(class_path)}")
    init_args = value.get("init_args")
    if init_args is None:
        init_args = {}
    if not isinstance(init_args, dict):
        raise source.error(f"{key}.init_args", f"expected a mapping of argument names to values, got {describe_value(init_args)}")
    for name in init_args:
        if not isinstance(name, str):
            raise source.error(f"{key}.init_args", f"argument names must be text, got {describe_value(name)}")
    return Spec(class_path, dict(init_args))


def import_object(path: str, key: str, source: Source) -> Any:
    """Import ``package.module.Name`` (or a nested attribute); it must be callable."""
    parts = path.split(".")
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise source.error(key, f"{path!r} is not an import path like torch.optim.SGD")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and (module_name == error.name or module_name.startswith(error.name + ".")):
                continue  # this prefix is no module: try a shorter one
            raise source.error(key, f"importing {module_name!r} failed: {error}") from error
        except Exception as error:
            raise source.error(key, f"importing {module_name!r} failed: {type(error).__name__}: {error}") from error
        for depth, attribute in enumerate(parts[split:]):
            if not hasattr(target, attribute):
                owner = ".".join(parts[: split + depth])
                public = [name for name in dir(target) if not name.startswith("_")]
                raise source.error(key, f"cannot import {path!r}: {owner} has no attribute {attribute!r}{_suggest(attribute, public)}")
            target = getattr(target, attribute)
        if not callable(target):
            raise source.error(key, f"{path!r} is a {type(target).__name__}, not a class or function")
        return target
    raise source.error(key, f"cannot import {path!r}: there is no module named {parts[0]!r}")


def check_value(value: Any, hint: Any, key: str, source: Source) -> None:
    """Check one argument: a plain value against ``hint``; a nested spec, and what it builds, too."""
    if is_spec(value):
        check_spec(parse_spec(value, key, source), key, source, hint=hint)
        return
    if isinstance(value, dict) and "init_args" in value:
        raise source.error(key, "init_args without a class_path; name the class to build with class_path")
    if isinstance(value, list) and any(is_spec(v) or isinstance(v, (list, dict)) for v in value):
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        sequences = [a for a in (args if origin in _UNIONS else (hint,)) if typing.get_origin(a) in _SEQUENCES or a in _SEQUENCES]
        if hint is not Any and hint is not inspect.Parameter.empty and not sequences:
            raise source.error(key, f"expected {describe(hint)}, got a list")
        element = typing.get_args(sequences[0])[0] if sequences and typing.get_args(sequences[0]) else Any
        for index, item in enumerate(value):
            check_value(item, element, f"{key}.{index}", source)
        return
    if isinstance(value, dict) and any(is_spec(v) for v in value.values()):
        for name, item in value.items():
            check_value(item, Any, f"{key}.{name}", source)
        return
    if not matches(value, hint):
        raise source.error(key, f"expected {describe(hint)}, got {describe_value(value)}")


def check_arguments(
    signature: Signature, arguments: dict[str, Any], key: str, source: Source, supplied: Collection[str] = ()
) -> None:
    """Refuse unknown arguments and wrong types; require the ones without defaults not ``supplied``."""
    for name, value in arguments.items():
        parameter = signature.parameters.get(name)
        if parameter is None and not signature.open:
            options = sorted(signature.parameters)
            raise source.error(
                f"{key}.{name}",
                f"unknown argument of {signature.owner}{_suggest(name, options)}; expected one of: {', '.join(options)}",
            )
        check_value(value, Any if parameter is None else parameter.hint, f"{key}.{name}", source)
    missing = [p.name for p in signature.parameters.values() if p.required and p.name not in arguments and p.name not in supplied]
    if missing:
        needed = ", ".join(f"{name} ({describe(signature.parameters[name].hint)})" for name in missing)
        raise source.error(key, f"{signature.owner} needs the argument{'s' if len(missing) > 1 else ''} {needed}")


def check_spec(
    spec: Spec, key: str, source: Source, hint: Any = Any, factory: bool = False, supplied: Collection[str] = ()
) -> Any:
    """Import a spec's target, check that it may build a ``hint``, check its ``init_args``; return it.

    ``factory``: the target is built later with one more positional argument (see
    :func:`signature_of`'s ``skip_first``).
    """
    target = import_object(spec.class_path, f"{key}.class_path", source)
    if not may_build(target, hint):
        raise source.error(f"{key}.class_path", f"{spec.class_path} does not build {describe(hint)}")
    check_arguments(signature_of(target, skip_first=factory), spec.init_args, f"{key}.init_args", source, supplied)
    return target


# ---------------------------------------------------------------------------------------- overrides


def parse_override(text: str, path: str) -> tuple[str, Any]:
    """``"optimizer.init_args.lr=0.01"`` -> ``("optimizer.init_args.lr", 0.01)``; the value is YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not all(part.strip() for part in key.split(".")):
        raise ConfigError(f"{path} (--set {text})", "", "expected --set KEY=VALUE with a dotted KEY, e.g. optimizer.init_args.lr=0.01")
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
            raise ConfigError(f"{path} (--set {key})", where, f"is {describe_value(child)}, not a mapping, so {key} cannot be set")
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


def parse_config(raw: Any, source: Source) -> UpdateConfig:
    """Check a parsed YAML document (imports every class it names, builds nothing)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise source.error("", f"expected a mapping of sections ({', '.join(SECTIONS)}), got {describe_value(raw)}")
    for name in raw:
        if name not in SECTIONS:
            raise source.error(str(name), f"unknown section{_suggest(str(name), SECTIONS)}; expected: {', '.join(SECTIONS)}")
    for name, required in SECTIONS.items():
        if required and raw.get(name) is None:
            raise source.error(name, "missing; a config needs updater, model, loss_fn and optimizer")

    from retentive.updaters.base import ModelUpdater

    updater = parse_spec(raw["updater"], "updater", source, shorthand=True)
    updater_class = import_object(updater.class_path, "updater.class_path", source)
    if not (inspect.isclass(updater_class) and issubclass(updater_class, ModelUpdater)):
        raise source.error("updater.class_path", f"{updater.class_path} is not a retentive ModelUpdater subclass")
    for name in updater.init_args:
        if name in _ELSEWHERE:
            raise source.error(f"updater.init_args.{name}", f"is set by {_ELSEWHERE[name]}, not in the updater's init_args")
    updater_signature = signature_of(updater_class)
    check_arguments(updater_signature, updater.init_args, "updater.init_args", source, supplied=_ELSEWHERE)

    trainer = raw.get("trainer") or {}
    if not isinstance(trainer, dict):
        raise source.error("trainer", f"expected a mapping of Trainer settings, got {describe_value(trainer)}")
    for name, value in trainer.items():
        if name not in TRAINER_KEYS:
            raise source.error(f"trainer.{name}", f"unknown trainer setting{_suggest(str(name), TRAINER_KEYS)}; expected one of: {', '.join(TRAINER_KEYS)}")
        parameter = updater_signature.parameters.get(name)
        if parameter is None and not updater_signature.open:
            raise source.error(f"trainer.{name}", f"{updater_signature.owner} takes no {name} argument")
        check_value(value, Any if parameter is None else parameter.hint, f"trainer.{name}", source)

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
    )


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> UpdateConfig:
    """Read and check a config file; ``overrides`` are ``KEY=VALUE`` strings (``--set``), applied in order."""
    label = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(label, "", f"cannot read the config: {error}") from error
    raw = parse_yaml(text, label)
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(label, "", f"expected a mapping of sections ({', '.join(SECTIONS)}), got {describe_value(raw)}")
    raw = raw or {}
    keys = []
    for item in overrides:
        key, value = parse_override(item, label)
        raw = apply_override(raw, key, value, label)
        keys.append(key)
    return parse_config(raw, Source(label, tuple(keys)))


# ---------------------------------------------------------------------------------------- building


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
        arguments["learning_rate_scheduler"] = factory(config.learning_rate_scheduler, "learning_rate_scheduler", source)
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
