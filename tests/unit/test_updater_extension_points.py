"""The updater's extension points are declared: every method in retentive overrides only them (and
its constructor), each is documented and typed, and the checker catches an undeclared override."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

import pytest

import retentive.updaters as package
from retentive.methods import registry
from retentive.updaters import ModelUpdater
from retentive.updaters.hooks import EXTENSION_POINTS, UpdaterHooks

#: a subclass may define these besides the extension points
_ALLOWED = {"__init__"}


def _updater_classes() -> list[type]:
    """Every ModelUpdater subclass defined in retentive (the updaters package and every registered method)."""
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    for spec in registry.all_methods(entry_points=False):
        spec.updater_class()
    found, todo = [], [ModelUpdater]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("retentive."):
                found.append(sub)
    return found


def undeclared_overrides(cls: type) -> list[str]:
    """``Class.method`` for each method of ModelUpdater that ``cls`` (or a mixin it has that
    ModelUpdater has not) overrides although it is not an extension point."""
    found = []
    for klass in cls.__mro__:
        if klass in ModelUpdater.__mro__:
            continue
        for name, value in vars(klass).items():
            inherited = getattr(ModelUpdater, name, None)
            if name in _ALLOWED or name in EXTENSION_POINTS or not callable(inherited):
                continue
            if callable(value) or isinstance(value, (staticmethod, classmethod, property)):
                found.append(f"{klass.__name__}.{name}")
    return found


def test_the_methods_in_retentive_override_only_the_declared_extension_points():
    classes = _updater_classes()
    assert len(classes) >= 25  # every registered updater and the package's shared bases
    offenders = {cls.__name__: undeclared_overrides(cls) for cls in classes}
    assert not {name: names for name, names in offenders.items() if names}


def test_the_checker_catches_an_override_of_an_undeclared_method():
    class Sneaky(ModelUpdater):
        def _fit(self, *args: Any) -> None:  # the fit path is not an extension point
            raise AssertionError

        def _snapshot(self) -> tuple[Any, ...]:
            return ()

        def fits(self, *args: Any) -> Any:  # declared: allowed
            return super().fits(*args)

    assert sorted(undeclared_overrides(Sneaky)) == ["Sneaky._snapshot"]  # ModelUpdater has no _fit any more
    assert undeclared_overrides(type("Honest", (ModelUpdater,), {"fits": UpdaterHooks.fits})) == []


@pytest.mark.parametrize("name", EXTENSION_POINTS)
def test_each_extension_point_is_a_typed_documented_method_of_the_updater(name):
    hook = getattr(ModelUpdater, name)
    assert getattr(UpdaterHooks, name) is hook  # declared in one place, hooks.py
    assert not name.startswith("_") and hook.__doc__ and len(hook.__doc__.split()) >= 8
    signature = inspect.signature(hook)
    assert signature.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in list(signature.parameters.values())[1:])
    assert name in importlib.import_module("retentive.updaters.hooks").__doc__  # in the table of when each runs
