"""run_training_job refuses bad input before any trial runs, with one clear error and nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from syne_tune.config_space import loguniform

from retentive.training import run_training_job
from retentive.training.config_module import ConfigModuleError

ROOT = Path(__file__).resolve().parents[2]
SPACE = {"optimizer": "SGD", "learning_rate": loguniform(1e-3, 0.3), "memory_size": 50}


def _job(tmp_path: Path, config: Path, **changes):
    arguments = dict(
        mode="max",
        config_space=dict(SPACE),
        metric="val_accuracy",
        backend="local",
        updater="DER",
        max_epochs=1,
        chunk_id=0,
        config_file=str(config),
        output_state_url=str(tmp_path / "out"),
        working_directory=str(tmp_path / "work"),
        n_workers=2,
        max_num_trials_finished=3,
    )
    arguments.update(changes)
    return run_training_job(**arguments)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "renate_config.py"
    shutil.copy(ROOT / "tests" / "support" / "hpo_config.py", path)
    return path


def _without(config: Path, name: str) -> Path:
    text = config.read_text().replace(f"def {name}(", f"def _unused_{name}(")
    config.write_text(text)
    return config


def _nothing_written(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renate_config.py"]


@pytest.mark.parametrize("missing", ["model_fn", "data_module_fn"])
def test_a_config_module_missing_a_required_function_is_refused(tmp_path, config, missing):
    with pytest.raises(
        ConfigModuleError, match=f"does not define {missing}; a config module must define model_fn and data_module_fn"
    ):
        _job(tmp_path, _without(config, missing))
    _nothing_written(tmp_path)


def test_a_config_space_key_that_is_no_updater_argument_is_refused(tmp_path, config):
    with pytest.raises(
        ValueError, match=r"config_space keys \['lerning_rate'\] are not arguments of DarkExperienceReplayModelUpdater"
    ):
        _job(tmp_path, config, config_space={"lerning_rate": loguniform(1e-3, 0.3), "memory_size": 50})
    _nothing_written(tmp_path)


def test_a_metric_the_learner_does_not_log_is_refused(tmp_path, config):
    with pytest.raises(ValueError, match=r"metric 'val_f1' is not logged; expected one of .*val_accuracy"):
        _job(tmp_path, config, metric="val_f1")
    _nothing_written(tmp_path)


def test_the_sagemaker_backend_names_what_to_use_instead(tmp_path, config):
    with pytest.raises(ValueError, match="backend='sagemaker' is not supported.*use backend='local'"):
        _job(tmp_path, config, backend="sagemaker")
    _nothing_written(tmp_path)


def test_a_search_without_a_stopping_rule_is_refused(tmp_path, config):
    with pytest.raises(ValueError, match="give max_time or max_num_trials_finished"):
        _job(tmp_path, config, max_num_trials_finished=None)
    _nothing_written(tmp_path)


def test_an_unknown_updater_and_scheduler_are_refused(tmp_path, config):
    # RD has a retentive counterpart since the method registry (issue 23): a name no method answers to
    with pytest.raises(ValueError, match="unknown updater 'NoSuchUpdater'; expected a Renate name .*RD"):
        _job(tmp_path, config, updater="NoSuchUpdater")
    with pytest.raises(ValueError, match=r"scheduler must be one of \['random', 'bo', 'asha'\]"):
        _job(tmp_path, config, scheduler="hyperband")
    _nothing_written(tmp_path)


def test_without_syne_tune_a_search_names_the_extra_to_install(tmp_path, monkeypatch):
    from retentive.training.space import read_space

    (tmp_path / "space.yaml").write_text("optimizer.init_args.lr: {loguniform: [0.001, 0.3]}\n")
    monkeypatch.setitem(__import__("sys").modules, "syne_tune", None)
    with pytest.raises(ImportError, match=r"install retentive's 'hpo' extra \(pip install 'retentive\[hpo\]'"):
        read_space(tmp_path / "space.yaml")


def test_a_space_file_is_read_as_configs_are(tmp_path):
    """``1e-3`` is a float (YAML 1.2, as in update configs) and a duplicate key is refused."""
    from retentive.training.space import SpaceError, read_space

    (tmp_path / "space.yaml").write_text("optimizer.init_args.lr: {loguniform: [1e-3, 3e-1]}\n")
    domain = read_space(tmp_path / "space.yaml")["optimizer.init_args.lr"]
    assert (domain.lower, domain.upper) == (1e-3, 3e-1)
    (tmp_path / "dup.yaml").write_text("seed: 1\nseed: 2\n")
    with pytest.raises(SpaceError, match=r"dup\.yaml: not valid YAML: .*duplicate key 'seed'"):
        read_space(tmp_path / "dup.yaml")
