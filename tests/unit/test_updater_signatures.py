"""Every updater's signature is real: ``inspect.signature`` lists every argument it takes, typed and
with its default; the config loader, the argument record and the call itself all read that one
signature; a misspelt or refused keyword is a TypeError naming it."""

from __future__ import annotations

import inspect
import typing
from functools import partial
from typing import Any

import pytest
import torch
from torch import nn

from retentive.cli.config import ConfigError, check_arguments, signature_of
from retentive.cli.config.schema import Source
from retentive.methods import registry
from retentive.models import MLP
from retentive.updaters import ExperienceReplayModelUpdater, ModelUpdater
from retentive.updaters.arguments import NOT_HYPERPARAMETERS
from retentive.updaters.signature import RefusedArgument, parameter_hints, refusals, refusing

#: arguments without a default, as Renate (or Avalanche, for RAR's batch_size_mem) requires them
REQUIRED = {"model", "loss_fn", "optimizer", "memory_size", "batch_size_mem"}
_OWN_MODEL = ("packnet", "progressive", "l2p", "l2p-replay", "speft")
QUIET = dict(seed=0, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, batch_size=10)
_SPECS = [spec for spec in registry.all_methods(entry_points=False)]


def _ids(specs: list[registry.MethodSpec]) -> list[str]:
    return [spec.name for spec in specs]


def _on_a_mlp(spec: registry.MethodSpec, **extra: Any) -> ModelUpdater:
    arguments = {"rar": {"batch_size_mem": 10, "mem_size": 20}, "joint": {}}.get(
        spec.name, {"memory_size": 20} if spec.memory_policy is not None else {}
    )
    cls = spec.updater_class()
    return cls(MLP(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), **QUIET, **arguments, **extra)


@pytest.mark.parametrize("spec", _SPECS, ids=_ids(_SPECS))
def test_the_signature_lists_every_argument_typed_with_its_default(spec):
    signature = inspect.signature(spec.updater_class())
    kinds = {p.kind for p in signature.parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    for name, parameter in signature.parameters.items():
        assert parameter.annotation is not inspect.Parameter.empty, name
        if name not in REQUIRED:
            assert parameter.default is not inspect.Parameter.empty, name
    # every argument the base class takes is listed, or refused with a reason
    base = inspect.signature(ModelUpdater).parameters
    assert set(base) <= set(signature.parameters) | set(refusals(spec.updater_class()))
    assert not set(signature.parameters) & set(refusals(spec.updater_class()))


@pytest.mark.parametrize("spec", _SPECS, ids=_ids(_SPECS))
def test_the_config_loader_reads_the_same_signature(spec):
    cls = spec.updater_class()
    listed = inspect.signature(cls).parameters
    loader = signature_of(cls)
    assert not loader.open
    assert list(loader.parameters) == list(listed)
    assert {n for n, p in loader.parameters.items() if p.required} == {
        n for n, p in listed.items() if p.default is inspect.Parameter.empty
    }
    untyped = [n for n, p in loader.parameters.items() if p.hint is Any and "Any" not in str(listed[n].annotation)]
    assert not untyped, f"types the config loader cannot resolve: {untyped}"
    assert dict(loader.refused) == dict(refusals(cls))


@pytest.mark.parametrize("spec", _SPECS, ids=_ids(_SPECS))
def test_a_misspelt_keyword_is_a_type_error_naming_it(spec):
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'max_epoch'; did you mean 'max_epochs'"):
        spec.updater_class()(None, None, None, max_epoch=3)  # refused before anything is built


@pytest.mark.parametrize(
    "spec",
    [s for s in _SPECS if refusals(s.updater_class())],
    ids=_ids([s for s in _SPECS if refusals(s.updater_class())]),
)
def test_a_refused_argument_is_refused_with_its_reason_by_the_call_and_the_config(spec):
    cls = spec.updater_class()
    for name, message in refusals(cls).items():
        assert message.startswith(cls.__name__) and name in message
        with pytest.raises(RefusedArgument) as caught:
            cls(None, None, None, **{name: None})
        assert str(caught.value) == message and isinstance(caught.value, TypeError)
    name = next(iter(refusals(cls)))
    with pytest.raises(ConfigError) as caught:
        check_arguments(signature_of(cls), {name: None}, "updater.init_args", Source("config.yaml"))
    assert caught.value.key == f"updater.init_args.{name}" and caught.value.problem == refusals(cls)[name]


@pytest.mark.parametrize("spec", _SPECS, ids=_ids(_SPECS))
def test_memory_insertion_is_the_specs_by_default(spec):
    parameter = inspect.signature(spec.updater_class()).parameters.get("memory_insertion")
    if parameter is not None:  # a choice, defaulting to the method's
        assert parameter.default == spec.memory_insertion
    else:  # fixed by the method: only update-end insertion is
        assert spec.memory_insertion == "update_end"
    if spec.name not in _OWN_MODEL:
        updater = _on_a_mlp(spec)
        assert updater.memory_insertion == spec.memory_insertion
        assert updater.learner.update_memory_every_step == (spec.memory_insertion == "step")


@pytest.mark.parametrize(
    "spec", [s for s in _SPECS if s.name not in _OWN_MODEL], ids=_ids([s for s in _SPECS if s.name not in _OWN_MODEL])
)
def test_the_argument_record_is_the_bound_signature(spec):
    updater = _on_a_mlp(spec, max_epochs=3)
    listed = set(inspect.signature(type(updater)).parameters) - NOT_HYPERPARAMETERS
    assert listed <= set(updater.hyperparameters)
    assert updater.hyperparameters["max_epochs"] == 3 and updater.hyperparameters["num_nodes"] == 1


def test_a_subclass_outside_the_package_gets_a_real_signature_too():
    class Mine(ExperienceReplayModelUpdater):
        refused_arguments = refusing(("loss_weight",), "weighs its own loss; drop {name!r}")

        def __init__(
            self, model: Any, loss_fn: Any, optimizer: Any, memory_size: int, gamma: float = 0.5, **kwargs: Any
        ) -> None:
            self.gamma = gamma
            super().__init__(model, loss_fn, optimizer, memory_size, **kwargs)

    parameters = inspect.signature(Mine).parameters
    assert list(parameters)[:5] == ["model", "loss_fn", "optimizer", "memory_size", "gamma"]
    assert parameters["alpha"].kind is inspect.Parameter.KEYWORD_ONLY and parameters["alpha"].default == 1.0
    assert "loss_weight" not in parameters
    assert signature_of(Mine).parameters["memory_size"].hint is int
    assert signature_of(Mine).parameters["model"].hint is nn.Module  # an untyped name takes its base's type
    with pytest.raises(TypeError, match="Mine weighs its own loss; drop 'loss_weight'"):
        Mine(MLP(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), 10, loss_weight=2.0)
    updater = Mine(MLP(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1), 10, gamma=0.25, alpha=0.5, **QUIET)
    assert updater.hyperparameters["gamma"] == 0.25 and updater.hyperparameters["alpha"] == 0.5


def test_a_missing_argument_keeps_pythons_own_message():
    with pytest.raises(TypeError, match="memory_size"):
        ExperienceReplayModelUpdater(MLP(), nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1))


@pytest.mark.parametrize("spec", _SPECS, ids=_ids(_SPECS))
def test_type_checkers_see_the_same_arguments_as_the_signature(spec):
    """``**kwargs: Unpack[...]`` (what IDEs and mypy read) names exactly the arguments the class
    passes on to its base, with the base's types."""
    cls = spec.updater_class()
    hint = typing.get_type_hints(cls.__init__, include_extras=True)["kwargs"]
    assert typing.get_origin(hint) is typing.Unpack
    settings = typing.get_args(hint)[0]
    passed_on = [n for n, p in inspect.signature(cls).parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert set(settings.__optional_keys__) == set(passed_on) and not settings.__required_keys__
    types, hints = typing.get_type_hints(settings), parameter_hints(cls)
    assert {n: types[n] for n in passed_on} == {n: hints[n] for n in passed_on}
