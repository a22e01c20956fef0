"""Checking a spec before anything is built: its import path, its arguments and their types."""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Collection, Iterable
from typing import Any

from retentive.cli.config.hints import SEQUENCES, UNIONS, describe, describe_value, matches, may_build, suggest
from retentive.cli.config.schema import SPEC_KEYS, Source, Spec
from retentive.cli.config.signatures import Signature, signature_of


def is_spec(value: Any) -> bool:
    """A mapping with a ``class_path``: an object to build."""
    return isinstance(value, dict) and "class_path" in value


def refuse_unknown(
    keys: Iterable[Any], known: Collection[str], where: str, source: Any, what: str, expected: str
) -> None:
    """Refuse the first of ``keys`` not in ``known``: ``where.key: unknown WHAT (did you mean ...?); EXPECTED``.

    ``source`` is a :class:`Source` (typed loosely for callers that pass one along untyped)."""
    for key in keys:
        if key not in known:
            raise source.error(
                f"{where}.{key}" if where else str(key), f"unknown {what}{suggest(str(key), known)}; {expected}"
            )


def parse_spec(value: Any, key: str, source: Source, shorthand: bool = False) -> Spec:
    """Check a ``{class_path, init_args}`` mapping (or, with ``shorthand``, a bare class path)."""
    if shorthand and isinstance(value, str):
        value = {"class_path": value}
    if not isinstance(value, dict):
        raise source.error(key, f"expected a mapping with class_path and init_args, got {describe_value(value)}")
    refuse_unknown(value, SPEC_KEYS, key, source, "key", "expected class_path and init_args")
    class_path = value.get("class_path")
    if not isinstance(class_path, str) or not class_path:
        raise source.error(
            f"{key}.class_path", f"expected an import path like torch.optim.SGD, got {describe_value(class_path)}"
        )
    init_args = value.get("init_args")
    if init_args is None:
        init_args = {}
    if not isinstance(init_args, dict):
        raise source.error(
            f"{key}.init_args", f"expected a mapping of argument names to values, got {describe_value(init_args)}"
        )
    for name in init_args:
        if not isinstance(name, str):
            raise source.error(f"{key}.init_args", f"argument names must be text, got {describe_value(name)}")
    return Spec(class_path, dict(init_args))


def lightning_precisions() -> tuple[str | int, ...]:
    """The ``precision`` values Lightning's Trainer accepts, in the order its own error lists them
    (empty where this Lightning does not say: the Trainer then judges the value itself)."""
    try:
        from lightning_fabric.connector import _PRECISION_INPUT_INT, _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
    except ImportError:
        return ()
    return tuple(
        v
        for kind in (_PRECISION_INPUT_STR, _PRECISION_INPUT_INT, _PRECISION_INPUT_STR_ALIAS)
        for v in typing.get_args(kind)
    )


def check_precision(value: Any, key: str, source: Source) -> None:
    """Refuse a precision Lightning does not accept now: the Trainer would refuse it only once the
    update has started, with a traceback."""
    accepted = lightning_precisions()
    if not accepted or value is None or (type(value) in (str, int) and value in accepted):
        return
    listed = ", ".join(repr(v) for v in accepted)
    hint = suggest(str(value), [v for v in accepted if isinstance(v, str)])
    raise source.error(key, f"expected a precision Lightning accepts ({listed}), got {describe_value(value)}{hint}")


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
                raise source.error(
                    key, f"cannot import {path!r}: {owner} has no attribute {attribute!r}{suggest(attribute, public)}"
                )
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
        sequences = [
            a for a in (args if origin in UNIONS else (hint,)) if typing.get_origin(a) in SEQUENCES or a in SEQUENCES
        ]
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
        if parameter is None and name in signature.refused:
            raise source.error(f"{key}.{name}", signature.refused[name])
        if parameter is None and not signature.open:
            options = sorted(signature.parameters)
            raise source.error(
                f"{key}.{name}",
                f"unknown argument of {signature.owner}{suggest(name, options)}; expected one of: {', '.join(options)}",
            )
        check_value(value, Any if parameter is None else parameter.hint, f"{key}.{name}", source)
    missing = [
        p.name
        for p in signature.parameters.values()
        if p.required and p.name not in arguments and p.name not in supplied
    ]
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
