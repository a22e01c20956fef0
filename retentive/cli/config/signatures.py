"""The keyword arguments a class or function takes, following ``**kwargs`` up a class's MRO."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


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

