"""The keyword arguments a class or function takes, as its signature says.

An updater's signature is complete (its own arguments and those it passes on to its base, made
once by :mod:`retentive.updaters.signature`), so what a config may give an updater is what
``inspect.signature`` shows, and a refused argument is refused with the updater's own reason.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Parameter:
    """A keyword argument a callable takes."""

    name: str
    hint: Any
    required: bool


@dataclass(frozen=True)
class Signature:
    """The keyword arguments of a callable; ``open``: it takes others that cannot be listed;
    ``refused``: arguments it declares it does not take -> the error saying why."""

    owner: str
    parameters: dict[str, Parameter]
    open: bool
    refused: Mapping[str, str] = field(default_factory=dict)


def _hints(function: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # names that only exist for type checkers: judge those arguments as Any
        return {}


def _is_updater(target: Any) -> bool:
    return inspect.isclass(target) and "_argument_owners" in target.__dict__


def signature_of(target: Any, skip_first: bool = False) -> Signature:
    """The keyword arguments ``target`` (a class or a function) accepts.

    ``skip_first`` leaves out the first positional parameter: the one a factory is later called
    with (an optimizer's parameters, a scheduler's optimizer). Parameters without a default are
    required.
    """
    owner = getattr(target, "__qualname__", None) or type(target).__name__
    refused: Mapping[str, str] = {}
    if _is_updater(target):
        from retentive.updaters.signature import parameter_hints, refusals

        signature, hints, refused = inspect.signature(target), parameter_hints(target), refusals(target)
    else:
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):  # a builtin without a signature
            return Signature(owner, {}, True)
        init = getattr(target, "__init__", None) if inspect.isclass(target) else None
        hints = _hints(init if init is not None else target)
    listed = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if skip_first and listed and listed[0].kind in positional:
        listed = listed[1:]
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = {
        p.name: Parameter(p.name, hints.get(p.name, Any), p.default is inspect.Parameter.empty)
        for p in listed
        if p.kind in keyword
    }
    takes_more = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in listed)
    return Signature(owner, parameters, takes_more, refused)
