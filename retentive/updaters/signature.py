"""Which arguments an updater takes: one signature per class, made once when the class is defined
and read by everything that asks — ``inspect.signature`` and ``help()``, the config loader, and the
record of the arguments (``hyperparameters``, the manifest, the resume fingerprint).

A method's ``__init__`` lists its own arguments and passes the rest on to its base with
``**kwargs``. :func:`define_signature` joins the two into the class's ``__signature__``: its own
arguments as written, then, keyword-only, every argument of its base's signature that it neither
lists itself nor refuses. A class refuses a base argument it sets itself, or has no use for, by
naming it in ``refused_arguments`` (see :func:`refusing`), with the reason the error gives.
:func:`bind_arguments` checks each call against the signature once, before any work is done: a
misspelt or refused keyword is a :class:`TypeError` naming it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_EMPTY = inspect.Parameter.empty
_VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD
_KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY
_UNTYPED = (_EMPTY, Any, "Any", "typing.Any")


class RefusedArgument(TypeError, ValueError):
    """An argument that this updater sets itself or has no use for.

    A ``TypeError``, as Python raises for an unexpected keyword; also a ``ValueError``, which some
    updaters raised for it before (callers that caught either keep working).
    """


def refusing(names: Iterable[str], why: str) -> dict[str, str]:
    """``{name: why}`` for a class's ``refused_arguments``. ``why`` follows the class name in the
    error and may name the argument as ``{name}`` or ``{name!r}``, e.g.
    ``"keeps no memory; drop the argument {name!r}"``."""
    return dict.fromkeys(names, why)


def _base(cls: type) -> Any:
    """The nearest class above ``cls`` with a signature of its own (mixins have none)."""
    return next((klass for klass in cls.__mro__[1:] if "_argument_owners" in klass.__dict__), None)


def define_signature(cls: Any) -> None:
    """Set ``cls.__signature__`` (and what :func:`parameter_hints` and :func:`bind_arguments`
    read) from its ``__init__``, its base's signature and its ``refused_arguments``."""
    base = _base(cls)
    refused: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        refused.update(klass.__dict__.get("refused_arguments", {}))
    init = cls.__dict__.get("__init__")
    parameters: list[inspect.Parameter] = []
    owners: dict[str, Callable[..., Any]] = {}
    if init is None and base is not None:  # nothing of its own: the base's arguments
        parameters = list(base.__signature__.parameters.values())
        owners = dict(base._argument_owners)
    else:
        passes_on = False
        inherited = {} if base is None else base.__signature__.parameters
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.kind is _VAR_KEYWORD:
                passes_on = True
                continue
            if p.annotation in _UNTYPED and p.name in inherited:  # a name passed on untyped: the base's type
                p = p.replace(annotation=inherited[p.name].annotation)
                owners[p.name] = base._argument_owners[p.name]
            else:
                owners[p.name] = init
            parameters.append(p)
        if passes_on and base is not None:
            for p in inherited.values():
                if p.name not in owners and p.name not in refused:
                    parameters.append(p.replace(kind=_KEYWORD_ONLY))
                    owners[p.name] = base._argument_owners[p.name]
    cls.__signature__ = inspect.Signature(parameters, return_annotation=None)
    cls._argument_owners = owners
    cls._refusals = {name: why for name, why in refused.items() if name not in owners}


@functools.cache
def _hints(owner: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(owner)
    except Exception:  # a name that exists only for type checkers: judge its arguments as Any
        return {}


def parameter_hints(cls: Any) -> dict[str, Any]:
    """Each argument's type, resolved in the module of the ``__init__`` that declares it."""
    return {name: _hints(owner).get(name, Any) for name, owner in cls._argument_owners.items()}


def refusals(cls: Any) -> Mapping[str, str]:
    """The arguments ``cls`` refuses -> the error saying why (those its bases take and it does not)."""
    return {name: f"{cls.__name__} {why.format(name=name)}" for name, why in cls._refusals.items()}


def bind_arguments(cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """Every argument of a call ``cls(*args, **kwargs)`` by name, defaults filled in.

    A keyword the signature lacks raises here: :class:`RefusedArgument` with the class's reason
    when it refuses it, else a ``TypeError`` naming it (and the closest name it takes). Missing or
    surplus positional arguments return ``None``: ``__init__`` then raises Python's own message.
    """
    signature: inspect.Signature = cls.__signature__
    for name in kwargs:
        if name in signature.parameters:
            continue
        reasons = refusals(cls)
        if name in reasons:
            raise RefusedArgument(reasons[name])
        close = difflib.get_close_matches(name, list(signature.parameters), 1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}{hint}")
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return dict(bound.arguments)
