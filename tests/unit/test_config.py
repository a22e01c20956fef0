"""YAML configs -> objects: the type checks, the error messages, and what gets built."""

from __future__ import annotations

import collections.abc
import copy
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
import torch
import yaml

from retentive import DarkExperienceReplayModelUpdater, LogitMSE, MemoryCrossEntropy, ModelUpdater
from retentive.cli.config import (
    ConfigError,
    Source,
    apply_override,
    build_updater,
    describe,
    load_config,
    matches,
    parse_override,
    parse_yaml,
    signature_of,
)

ROOT = Path(__file__).resolve().parents[2]
DER = ROOT / "configs" / "der.yaml"


def der_raw() -> dict[str, Any]:
    return yaml.safe_load(DER.read_text())


def write(tmp_path: Path, raw: dict[str, Any], name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def config_error(tmp_path: Path, edit, overrides=()) -> ConfigError:
    raw = der_raw()
    edit(raw)
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    assert str(path) in str(caught.value), "every config error names the file"
    return caught.value


# ------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    "value, hint, expected",
    [
        (3, int, True),
        (True, int, False),  # a YAML bool is no int
        (3, float, True),  # an int is a float
        (False, float, False),
        ("3", int, False),
        (None, Optional[int], True),  # noqa: UP045 (the old spelling is what is under test)
        (2.5, int | None, False),
        ([100, 100], collections.abc.Sequence[int], True),
        ("ab", collections.abc.Sequence[str], False),  # text is not a list
        ([1, "a"], list[int], False),
        ([1, 2, 3], tuple[int, ...], True),
        ([1, 2], tuple[int, str], False),
        ("sum", Literal["mean", "sum"], True),
        ("max", Literal["mean", "sum"], False),
        ({"a": 1}, dict[str, int], True),
        ({"a": "b"}, dict[str, int], False),
        (len, collections.abc.Callable[[int], int], True),
        (3, collections.abc.Callable, False),
        (torch.nn.Linear(1, 1), torch.nn.Module, True),
        ("x", torch.nn.Module, False),
        ("anything", Any, True),
        ("tb_logs", str | Path, True),
    ],
)
def test_matches(value, hint, expected):
    assert matches(value, hint) is expected


def test_describe_reads_like_python():
    assert describe(int | None) == "int | null"
    assert describe(list[int]) == "list[int]"
    assert describe(collections.abc.Callable[[int], int]) == "a callable"
    assert describe(Literal["a", "b"]) == "'a' | 'b'"
    assert describe(torch.nn.Module) == "Module"


def test_signature_follows_kwargs_to_the_base_updater():
    signature = signature_of(DarkExperienceReplayModelUpdater)
    assert not signature.open
    assert {"alpha", "beta", "memory_size", "precision", "batch_memory_frac", "components"} <= set(signature.parameters)
    assert signature.parameters["alpha"].hint is float
    # only the class's own arguments without defaults are required
    assert {p.name for p in signature.parameters.values() if p.required} == {
        "model",
        "loss_fn",
        "optimizer",
        "memory_size",
    }


def test_signature_of_a_factory_leaves_out_what_it_is_called_with():
    sgd = signature_of(torch.optim.SGD, skip_first=True)
    assert "params" not in sgd.parameters and "lr" in sgd.parameters
    step = signature_of(torch.optim.lr_scheduler.StepLR, skip_first=True)
    assert "optimizer" not in step.parameters
    assert step.parameters["step_size"].required


def test_signature_stays_open_where_kwargs_lead_nowhere_known():
    class Anything:
        def __init__(self, depth: int, **kwargs: Any) -> None:
            pass

    signature = signature_of(Anything)
    assert signature.open and set(signature.parameters) == {"depth"}


def test_yaml_refuses_duplicate_keys_and_reads_exponents_as_floats():
    assert parse_yaml("lr: 1e-3\nmomentum: .9\nn: 3\n", "x.yaml") == {"lr": 0.001, "momentum": 0.9, "n": 3}
    with pytest.raises(ConfigError, match=r"x\.yaml: not valid YAML: .*duplicate key 'lr' \(first on line 1\)"):
        parse_yaml("lr: 0.1\nlr: 0.2\n", "x.yaml")


def test_overrides_parse_as_yaml_and_create_missing_mappings():
    assert parse_override("optimizer.init_args.lr=0.01", "c.yaml") == ("optimizer.init_args.lr", 0.01)
    assert parse_override("trainer.devices=[0, 1]", "c.yaml") == ("trainer.devices", [0, 1])
    raw = {"logger": {"class_path": "X"}}
    changed = apply_override(raw, "logger.init_args.save_dir", "runs", "c.yaml")
    assert changed == {"logger": {"class_path": "X", "init_args": {"save_dir": "runs"}}}
    assert raw == {"logger": {"class_path": "X"}}, "the input is not modified"
    with pytest.raises(ConfigError, match=r"logger: is bool False, not a mapping"):
        apply_override({"logger": False}, "logger.init_args.save_dir", "runs", "c.yaml")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("optimizer.init_args.lr", "c.yaml")


def test_source_names_the_override_behind_an_error():
    source = Source("c.yaml", ("optimizer.init_args.lr",))
    assert (
        str(source.error("optimizer.init_args.lr", "bad"))
        == "c.yaml (with --set optimizer.init_args.lr): optimizer.init_args.lr: bad"
    )
    assert str(source.error("model", "bad")) == "c.yaml: model: bad"


# ------------------------------------------------------------------------------------- errors


def test_unknown_argument_names_key_and_file_and_suggests(tmp_path):
    error = config_error(tmp_path, lambda r: r["updater"]["init_args"].update(alpah=0.3))
    assert error.key == "updater.init_args.alpah"
    assert "unknown argument of DarkExperienceReplayModelUpdater (did you mean 'alpha'?)" in str(error)


def test_wrong_type_names_key_file_and_both_types(tmp_path):
    error = config_error(tmp_path, lambda r: r["updater"]["init_args"].update(memory_size="500"))
    assert error.key == "updater.init_args.memory_size"
    assert "expected int, got str '500'" in str(error)
    error = config_error(tmp_path, lambda r: r["updater"]["init_args"].update(memory_size=True))
    assert "expected int, got bool True" in str(error)
    error = config_error(tmp_path, lambda r: r["optimizer"]["init_args"].update(lr="fast"))
    assert error.key == "optimizer.init_args.lr" and "expected float | Tensor, got str 'fast'" in str(error)
    error = config_error(tmp_path, lambda r: r["model"]["init_args"].update(hidden="100"))
    assert error.key == "model.init_args.hidden" and "expected Sequence[int]" in str(error)
    error = config_error(tmp_path, lambda r: r["trainer"].update(max_epochs=1.5))
    assert error.key == "trainer.max_epochs" and "expected int, got float 1.5" in str(error)
    error = config_error(tmp_path, lambda r: r.update(seed="zero"))
    assert error.key == "seed"


def test_unknown_sections_and_keys(tmp_path):
    error = config_error(tmp_path, lambda r: r.update(optimiser=r.pop("optimizer")))
    assert error.key == "optimiser" and "did you mean 'optimizer'?" in str(error)
    error = config_error(tmp_path, lambda r: r["trainer"].update(max_epoch=2))
    assert error.key == "trainer.max_epoch" and "did you mean 'max_epochs'?" in str(error)
    error = config_error(tmp_path, lambda r: r["model"].update(init_arg={}))
    assert error.key == "model.init_arg" and "did you mean 'init_args'?" in str(error)
    error = config_error(tmp_path, lambda r: r["model"]["init_args"].update(width=3))
    assert error.key == "model.init_args.width" and "unknown argument of MLP" in str(error)


def test_misplaced_and_missing_arguments(tmp_path):
    error = config_error(tmp_path, lambda r: r["updater"]["init_args"].update(max_epochs=2))
    assert error.key == "updater.init_args.max_epochs" and "the trainer: section" in str(error)
    error = config_error(tmp_path, lambda r: r["updater"]["init_args"].update(output_state_folder="x"))
    assert "--output-state" in str(error)
    error = config_error(tmp_path, lambda r: r["updater"]["init_args"].pop("memory_size"))
    assert error.key == "updater.init_args" and "needs the argument memory_size (int)" in str(error)
    error = config_error(tmp_path, lambda r: r.pop("model"))
    assert error.key == "model" and "missing" in str(error)


def test_class_paths_are_checked(tmp_path):
    error = config_error(tmp_path, lambda r: r["optimizer"].update(class_path="torch.optim.SGDD"))
    assert error.key == "optimizer.class_path" and "torch.optim has no attribute 'SGDD' (did you mean 'SGD'?)" in str(
        error
    )
    error = config_error(tmp_path, lambda r: r["model"].update(class_path="no_such_package.Net"))
    assert "there is no module named 'no_such_package'" in str(error)
    error = config_error(tmp_path, lambda r: r["updater"].update(class_path="torch.nn.Linear"))
    assert error.key == "updater.class_path" and "not a retentive ModelUpdater subclass" in str(error)
    error = config_error(tmp_path, lambda r: r["model"].update(class_path="torch.optim.SGD", init_args={}))
    assert error.key == "model.class_path" and "does not build Module" in str(error)


def test_an_error_from_an_override_says_so(tmp_path):
    path = write(tmp_path, der_raw())
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["optimizer.init_args.lr=fast"])
    assert str(caught.value).startswith(f"{path} (with --set optimizer.init_args.lr): optimizer.init_args.lr: expected")


def test_duplicate_keys_in_a_file_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(DER.read_text() + "seed: 1\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: not valid YAML: .*duplicate key 'seed'"):
        load_config(path)


# ------------------------------------------------------------------------------------- building


def test_build_der_with_overrides_and_a_scheduler(tmp_path):
    raw = der_raw()
    raw["learning_rate_scheduler"] = {
        "class_path": "torch.optim.lr_scheduler.StepLR",
        "init_args": {"step_size": 2, "gamma": 0.5},
    }
    path = write(tmp_path, raw)
    config = load_config(path, ["optimizer.init_args.lr=0.02", "updater.init_args.beta=0", "logger=false"])
    updater = build_updater(config, output_state_folder=tmp_path / "out")
    assert isinstance(updater, DarkExperienceReplayModelUpdater)
    assert updater.hyperparameters["beta"] == 0 and updater.hyperparameters["alpha"] == 0.5
    assert [type(c) for c in updater.learner.components] == [LogitMSE]  # beta 0: DER, no memory CE
    assert (updater.new_batch_size, updater.memory_batch_size) == (32, 32)
    assert updater.logger is None
    assert updater.trainer_kwargs["max_epochs"] == 1 and updater.trainer_kwargs["accelerator"] == "cpu"
    optimizer = updater.learner.optimizer_factory(updater.model.parameters())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["lr"] == 0.02
    scheduler = updater.learner.lr_scheduler_factory(optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR) and scheduler.step_size == 2


def test_nested_specs_build_a_custom_updater(tmp_path):
    """Any ModelUpdater with components named in YAML: the generic path new updaters take."""
    raw = der_raw()
    raw["updater"] = {
        "class_path": "retentive.ModelUpdater",
        "init_args": {
            "memory_size": 50,
            "components": [
                {"class_path": "retentive.LogitMSE", "init_args": {"weight": 0.25}},
                {"class_path": "retentive.MemoryCrossEntropy"},
            ],
        },
    }
    raw["logger"] = False
    updater = build_updater(load_config(write(tmp_path, raw)))
    assert type(updater) is ModelUpdater
    assert [type(c) for c in updater.learner.components] == [LogitMSE, MemoryCrossEntropy]
    assert updater.learner.components[0].weight == 0.25
    raw["updater"]["init_args"]["components"][1] = {
        "class_path": "torch.nn.Linear",
        "init_args": {"in_features": 1, "out_features": 1},
    }
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, raw))
    assert caught.value.key == "updater.init_args.components.1.class_path" and "does not build Component" in str(
        caught.value
    )


def test_a_refusal_by_the_constructor_names_the_section(tmp_path):
    raw = der_raw()
    raw["updater"]["init_args"]["batch_memory_frac"] = 1.5
    with pytest.raises(ConfigError) as caught:
        build_updater(load_config(write(tmp_path, raw)))
    assert caught.value.key == "updater" and "batch_memory_frac must lie in [0, 1), got 1.5" in str(caught.value)
    raw = yaml.safe_load((ROOT / "configs" / "fine_tuning.yaml").read_text())
    raw["updater"]["init_args"]["memory_size"] = 10
    with pytest.raises(ConfigError, match="FineTuningModelUpdater keeps no memory"):
        build_updater(load_config(write(tmp_path, raw)))


def test_seed_fixes_the_model_initialisation(tmp_path):
    raw = der_raw()
    raw["logger"] = False
    first = build_updater(load_config(write(tmp_path, raw))).model.state_dict()
    again = build_updater(load_config(write(tmp_path, raw))).model.state_dict()
    raw["seed"] = 1
    other = build_updater(load_config(write(tmp_path, copy.deepcopy(raw)))).model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["classifier.weight"], other["classifier.weight"])


def test_every_shipped_config_loads_and_builds(tmp_path):
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        config = load_config(path, ["logger=false"])
        updater = build_updater(config, output_state_folder=tmp_path / path.stem)
        assert type(updater).__name__ == config.updater.class_path.rsplit(".", 1)[-1], path
