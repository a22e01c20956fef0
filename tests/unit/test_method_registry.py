"""The method registry (retentive.methods) is the one list of methods: the exports, the updaters and
components packages, the config loader, `retentive benchmark`, the Renate name map and the Renate
state import are derived from it, a method from a file outside the package joins all of them, and
every Renate updater name reaches its class through run_training_job."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import yaml

import retentive
from retentive.methods import registry
from retentive.methods.registry import MethodSpec, all_methods, import_path

ROOT = Path(__file__).resolve().parents[2]
#: Renate 0.5.2's updater names (renate/cli/parsing_functions.py) -> retentive's classes: the drop-in names
RENATE = {
    "ER": "ExperienceReplayModelUpdater",
    "DER": "DarkExperienceReplayModelUpdater",
    "POD-ER": "PooledOutputDistillationExperienceReplayModelUpdater",
    "CLS-ER": "CLSExperienceReplayModelUpdater",
    "Super-ER": "SuperExperienceReplayModelUpdater",
    "Offline-ER": "OfflineExperienceReplayModelUpdater",
    "GDumb": "GDumbModelUpdater",
    "Joint": "JointModelUpdater",
    "FineTuning": "FineTuningModelUpdater",
    "Avalanche-ER": "ExperienceReplayAvalancheModelUpdater",
    "Avalanche-EWC": "ElasticWeightConsolidationModelUpdater",
    "Avalanche-LwF": "LearningWithoutForgettingModelUpdater",
    "Avalanche-iCaRL": "ICaRLModelUpdater",
    "LearningToPrompt": "LearningToPromptModelUpdater",
    "LearningToPromptReplay": "LearningToPromptReplayModelUpdater",
    "SPeft": "SPeftModelUpdater",
    "RD": "RepeatedDistillationModelUpdater",
}


def _builtin() -> tuple[MethodSpec, ...]:
    return tuple(spec for spec in all_methods() if spec.updater.startswith("retentive."))


def _type_checking_names() -> set[str]:
    tree = ast.parse((ROOT / "retentive" / "__init__.py").read_text(encoding="utf-8"))
    block = next(
        node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name
        for node in ast.walk(block)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def _config_updater(path: Path) -> str:
    updater = yaml.safe_load(path.read_text(encoding="utf-8"))["updater"]
    return updater if isinstance(updater, str) else updater["class_path"]


# ------------------------------------------------------------------ 1. every derived list agrees
def test_the_builtin_specs_name_real_updaters_once_each():
    from retentive.updaters.base import ModelUpdater

    specs = _builtin()
    assert len(specs) == 26 and len({spec.class_name for spec in specs}) == 26
    names = [alias for spec in specs for alias in spec.names]
    assert len(names) == len(set(names)), "two methods answer to one name"
    for spec in specs:
        cls = spec.updater_class()
        assert issubclass(cls, ModelUpdater) and cls is not ModelUpdater and cls.__name__ == spec.class_name
        for path in (*spec.components, *spec.exports):
            assert import_path(path) is not None
        assert registry.get(spec.name) is spec and all(registry.get(alias) is spec for alias in spec.names)


def test_the_exports_are_the_registry_plus_the_core_names():
    import retentive.components
    import retentive.updaters

    derived = registry.exports()
    assert {name: retentive._EXPORTS[name] for name in derived} == derived
    assert set(retentive._EXPORTS) - set(derived) == set(retentive._CORE_EXPORTS)
    assert set(retentive.__all__) == set(retentive._EXPORTS) | {"__version__"}
    for name, module in derived.items():
        assert getattr(retentive, name) is getattr(importlib.import_module(module), name)
    assert _type_checking_names() <= set(retentive.__all__), "the TYPE_CHECKING block names a name not exported"
    in_updaters = sorted(n for n, m in registry.updater_exports().items() if m.startswith("retentive.updaters."))
    assert retentive.updaters.__all__ == ["ModelUpdater", "split_batch", *in_updaters]
    for name, module in registry.component_exports().items():
        if module.startswith("retentive.components"):
            assert name in retentive.components.__all__


def test_the_configs_name_registered_methods_and_each_method_its_configs():
    by_class = {spec.class_name: spec for spec in _builtin()}
    stems = {path.stem: path for path in (ROOT / "configs").glob("*.yaml")}
    for stem, path in stems.items():
        class_name = _config_updater(path).rpartition(".")[2]
        assert class_name == "ModelUpdater" or stem in by_class[class_name].configs, f"{stem}.yaml: {class_name}"
    for spec in _builtin():
        assert spec.configs, f"{spec.name} has no example config"
        for stem in spec.configs:
            assert _config_updater(stems[stem]).rpartition(".")[2] == spec.class_name


def test_the_config_loader_and_the_benchmark_take_every_name_of_every_method():
    from retentive.benchmarking.methods import PROTOCOLS, _resolve_updater
    from retentive.cli.config.parsing import method_spec
    from retentive.cli.config.schema import Spec

    for spec in _builtin():
        for alias in spec.names:
            assert method_spec(Spec(alias, {"alpha": 1})) == Spec(spec.updater, {"alpha": 1})
            assert _resolve_updater(alias) is spec.updater_class()
    assert method_spec(Spec("torch.nn.Linear", {})) == Spec("torch.nn.Linear", {})
    for methods in PROTOCOLS.values():
        for method in methods.values():
            assert registry.get(method.updater).updater_class() is method.updater_class
    assert [row[0] for row in registry.method_rows()] == [spec.name for spec in all_methods()]
    with pytest.raises(ValueError, match="unknown updater 'nope'.*DarkExperienceReplayModelUpdater"):
        _resolve_updater("nope")


def test_the_renate_names_and_the_renate_import_come_from_the_registry():
    from retentive.cli import build_parser
    from retentive.state.renate import UPDATER_COMPONENTS
    from retentive.training import renate_names

    assert registry.renate_names() == RENATE
    assert not hasattr(renate_names, "NOT_YET") and not hasattr(renate_names, "UPDATERS")
    assert (
        UPDATER_COMPONENTS
        == registry.renate_importable()
        == {
            "ExperienceReplayModelUpdater": ("MemoryCrossEntropy",),
            "DarkExperienceReplayModelUpdater": ("LogitMSE", "MemoryCrossEntropy"),
            "FineTuningModelUpdater": (),
        }
    )
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "import-renate" in a.choices).choices["import-renate"]
    assert next(a for a in sub._actions if a.dest == "updater").choices == sorted(UPDATER_COMPONENTS)


#: the methods that train a plain MLP with these arguments; the others need their own model family
_ON_A_MLP: dict[str, dict[str, int]] = {"rar": {"batch_size_mem": 10, "mem_size": 20}, "joint": {}}
_OWN_MODEL = ("packnet", "progressive", "l2p", "l2p-replay", "speft")


@pytest.mark.parametrize("name", [spec.name for spec in _builtin() if spec.name not in _OWN_MODEL])
def test_each_specs_memory_insertion_is_what_its_updater_does(name):
    from functools import partial

    import torch

    from retentive.models import MLP

    spec = registry.get(name)
    arguments = _ON_A_MLP.get(name, {"memory_size": 20} if spec.memory_policy is not None else {})
    updater = spec.updater_class()(
        MLP(),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        seed=0,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        batch_size=10,
        **arguments,
    )
    assert updater.learner.update_memory_every_step == (spec.memory_insertion == "step")
    assert (updater.memory.capacity > 0) == (spec.memory_policy is not None) or name == "joint"


def test_a_malformed_or_clashing_spec_is_refused():
    with pytest.raises(ValueError, match="lower-case"):
        MethodSpec("My Method", "pkg.mod.Cls", "x")
    with pytest.raises(ValueError, match="import path"):
        MethodSpec("m", "Cls", "x")
    with pytest.raises(ValueError, match="memory_insertion"):
        MethodSpec("m", "pkg.mod.Cls", "x", memory_insertion="never")
    with pytest.raises(ValueError, match=r"\['DER'\] already belong to \['der'\]"):
        registry.register(MethodSpec("mine", "pkg.mod.MineModelUpdater", "x", renate_name="DER"))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(MethodSpec("der", "pkg.mod.Other", "x"))
    with pytest.raises(AttributeError, match="immutable"):
        registry.get("der").name = "x"


# ------------------------------------------------------------------ 2. a method from one file outside
METHOD_FILE = '''
"""A method in one file: its component, its updater and its spec."""
from retentive.components import MemoryCrossEntropy
from retentive.methods import MethodSpec, register
from retentive.updaters.baselines import FineTuningModelUpdater


class MyTerm(MemoryCrossEntropy):
    """A loss term of its own."""


class MyMethodModelUpdater(FineTuningModelUpdater):
    """Fine-tuning under a new name."""


register(MethodSpec("my-method", f"{__name__}.MyMethodModelUpdater", "fine-tuning under a new name",
                    renate_name="MyMethod", configs=("my_method",), components=(f"{__name__}.MyTerm",),
                    renate_import=()))
'''


@pytest.fixture
def outside_method(tmp_path, monkeypatch):
    (tmp_path / "my_method.py").write_text(textwrap.dedent(METHOD_FILE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("my_method")
    yield module
    registry.unregister("my-method")
    sys.modules.pop("my_method", None)
    for name in ("MyMethodModelUpdater", "MyTerm"):
        vars(retentive).pop(name, None)


def test_a_method_from_one_file_outside_the_package_is_everywhere(outside_method, tmp_path):
    from retentive.benchmarking.methods import load_methods
    from retentive.cli import main
    from retentive.cli.config import load_config
    from retentive.training.renate_names import updater_class

    cls = outside_method.MyMethodModelUpdater
    # the exports
    assert retentive.MyMethodModelUpdater is cls and retentive.MyTerm is outside_method.MyTerm
    assert "MyMethodModelUpdater" in dir(retentive) and registry.get("MyMethod").updater_class() is cls
    # the config loader: `retentive update --config` with the method's name as its updater
    config = tmp_path / "my_method.yaml"
    config.write_text(
        textwrap.dedent("""\
        updater: {class_path: my-method, init_args: {batch_size: 8}}
        model: {class_path: retentive.models.MLP, init_args: {in_features: 4, hidden: [8], num_classes: 2}}
        loss_fn: torch.nn.CrossEntropyLoss
        optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.1}}
        """),
        encoding="utf-8",
    )
    assert load_config(config).updater.class_path == "my_method.MyMethodModelUpdater"
    # `retentive benchmark`: its method table, and a methods file naming it
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["benchmark", "--list-methods"]) == 0
    assert any(
        line.split()[:3] == ["my-method", "MyMethod", "MyMethodModelUpdater"] for line in out.getvalue().splitlines()
    )
    methods = tmp_path / "methods.yaml"
    methods.write_text(
        "mine: {updater: MyMethod, optimizer_args: {lr: 0.1}, args: {batch_size: 8}}\n", encoding="utf-8"
    )
    assert load_methods(methods)["mine"].updater_class is cls
    # the Renate name map (run_training_job's) and the Renate state import
    assert registry.renate_names()["MyMethod"] == "MyMethodModelUpdater" and updater_class("MyMethod") is cls
    assert registry.renate_importable()["MyMethodModelUpdater"] == ()


def test_a_plugin_registers_through_the_entry_point_group(tmp_path, monkeypatch):
    (tmp_path / "my_plugin.py").write_text(
        textwrap.dedent("""
        from retentive.methods import MethodSpec

        def methods():
            return [MethodSpec("plugged", "retentive.updaters.baselines.FineTuningModelUpdater", "a plug-in",
                               aliases=("Plugged",))]
        """),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [EntryPoint("plugged", "my_plugin:methods", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(
        "importlib.metadata.entry_points", lambda group: points if group == registry.ENTRY_POINT_GROUP else []
    )
    monkeypatch.setitem(registry._DISCOVERED, "entry_points", False)
    with pytest.warns(RuntimeWarning, match="plug-in 'plugged' .* skipped: .*already belong"):
        assert registry.find("Plugged") is None  # it reuses FineTuning's class name: skipped, not fatal
    points[:] = []
    (tmp_path / "my_plugin2.py").write_text(
        textwrap.dedent("""
        from retentive.methods import MethodSpec, register
        register(MethodSpec("plugged", "my_method_free.PluggedModelUpdater", "a plug-in", aliases=("Plugged",)))
        """),
        encoding="utf-8",
    )
    points.append(EntryPoint("plugged", "my_plugin2", registry.ENTRY_POINT_GROUP))
    monkeypatch.setitem(registry._DISCOVERED, "entry_points", False)
    try:
        assert registry.get("Plugged").name == "plugged"
        assert "plugged" in [row[0] for row in registry.method_rows()]
    finally:
        registry.unregister("plugged")
        sys.modules.pop("my_plugin2", None)
        sys.modules.pop("my_plugin", None)


# ------------------------------------------------------------------ 3. every Renate name in run_training_job
@pytest.mark.parametrize("name", sorted(RENATE))
def test_run_training_job_accepts_every_renate_updater_name(name, tmp_path):
    from retentive.training import run_training_job

    # an unknown config-space key is refused after the updater name is resolved, naming its class:
    # the name reached the right class, and nothing trained
    with pytest.raises(ValueError, match=rf"\['not_an_argument'\] are not arguments of {RENATE[name]}\b"):
        run_training_job(
            config_space={"not_an_argument": 1},
            mode="max",
            metric="val_accuracy",
            backend="local",
            updater=name,
            config_file=str(ROOT / "tests" / "support" / "hpo_config.py"),
            output_state_url=str(tmp_path / "out"),
            working_directory=str(tmp_path / "work"),
        )
    assert not (tmp_path / "out").exists()
