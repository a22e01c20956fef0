"""What an updater is built with: the step's batch split, extra components, and the record of
every constructor argument (the manifest's hyperparameters, the resume fingerprint, TensorBoard's
hparams)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from retentive.components.base import Component

DEFAULT_BATCH_MEMORY_FRAC = 0.5

#: constructor arguments that say where and how to run, not what is learned: not hyperparameters
NOT_HYPERPARAMETERS = frozenset(
    {"model", "input_state_folder", "output_state_folder", "logger", "callbacks", "enable_progress_bar", "resume"}
)

def split_batch(
    batch_size: int, memory_size: int, batch_memory_frac: float | None, memory_batch_size: int | None
) -> tuple[int, int]:
    """Return ``(new samples, memory samples)`` per step.

    Renate's convention (default): ``batch_size`` is the whole step and ``batch_memory_frac`` of
    it comes from memory: ``m = min(memory_size, int(frac * batch_size))``, ``new = batch_size - m``.
    The DER paper's convention (e.g. 10 new + 128 memory): pass ``memory_batch_size``; then
    ``batch_size`` counts the new samples alone and ``m = min(memory_size, memory_batch_size)``.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if memory_batch_size is not None:
        if batch_memory_frac is not None:
            raise ValueError("pass either batch_memory_frac (Renate's split) or memory_batch_size (new + memory), not both")
        if memory_batch_size < 0:
            raise ValueError(f"memory_batch_size must be >= 0, got {memory_batch_size}")
        return batch_size, min(memory_size, memory_batch_size)
    frac = DEFAULT_BATCH_MEMORY_FRAC if batch_memory_frac is None else float(batch_memory_frac)
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"batch_memory_frac must lie in [0, 1), got {frac}")
    memory = min(memory_size, int(frac * batch_size))
    if batch_size - memory < 1:
        raise ValueError(f"batch_size={batch_size} with batch_memory_frac={frac} leaves no room for new samples")
    return batch_size - memory, memory


def plain(value: Any) -> Any:
    """A JSON-able record of a hyperparameter (callables by their qualified name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    func = getattr(value, "func", None)  # functools.partial
    if func is not None:
        return {"callable": getattr(func, "__qualname__", repr(func)), "kwargs": plain(getattr(value, "keywords", {}))}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "__qualname__"):  # a function or a class
        return value.__qualname__
    settings = {k: plain(v) for k, v in vars(value).items() if not k.startswith("_") and _isplain(v)}
    if isinstance(value, Component):
        settings = {"weight": value.weight, **settings}
    return {"class": type(value).__qualname__, **settings} if settings else type(value).__qualname__


def _isplain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_isplain(v) for v in value)


def captured_arguments(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every constructor argument of ``cls`` as called, defaults filled in along the class chain.

    A subclass that passes ``**kwargs`` on to its base gets the base's defaults for the rest, so
    the record names every argument the updater was built with, including the scheduler and the
    memory policy; the resume fingerprint and the manifest read it.
    """
    bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
    bound.apply_defaults()
    captured: dict[str, Any] = {}
    for name, value in list(bound.arguments.items())[1:]:
        kind = inspect.signature(cls.__init__).parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            captured.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            captured[name] = value
    for base in cls.__mro__[1:]:
        if not (isinstance(base, type) and getattr(base, "_captures_arguments", False)):
            continue
        for name, parameter in inspect.signature(base.__init__).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                captured.setdefault(name, parameter.default)
    return captured


def with_user_components(own: Sequence[Component], kwargs: dict[str, Any]) -> list[Component]:
    """A method's own components followed by any the user added with ``components=`` (e.g. ER + EWC).

    Pops ``components`` from ``kwargs``, so the method's ``super().__init__`` receives one list.
    """
    extra = list(kwargs.pop("components", None) or ())
    for component in extra:
        if not isinstance(component, Component):
            raise TypeError(f"components must be retentive Components, got {type(component).__name__}")
    return list(own) + extra
