"""Type hints against YAML values and ``class_path`` targets, and how errors describe both."""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import types
import typing
from collections.abc import Collection
from typing import Any, Literal, Union


def _is_protocol(cls: type) -> bool:
    return bool(getattr(cls, "_is_protocol", False)) and not getattr(cls, "_is_runtime_protocol", False)


def _isinstance(value: Any, cls: type) -> bool:
    if _is_protocol(cls):
        return True
    try:
        return isinstance(value, cls)
    except TypeError:  # a class isinstance cannot check
        return True


SEQUENCES = (
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
UNIONS = (Union, types.UnionType)


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
    if origin in UNIONS:
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
    if origin in SEQUENCES:
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
    if origin in UNIONS:
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
    if origin in UNIONS:
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


def suggest(name: str, options: Collection[str]) -> str:
    close = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
