"""The pipeline of docs/how-to/gates-and-registry.md on the command line, against a real MLflow
server: the first gated update creates the model home, a harmful chunk is rejected, ``inspect
--history`` lists it, and ``promote --challenger`` / ``rollback`` move the registry's ``champion``
with the home; the Python API (``retentive.registry.serving``) does the same. Without a gate,
``--output-state`` still writes a single state folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow_server import mlflow_uri  # noqa: F401 - the fixture
from script_modules import write_gate_pipeline_chunks

from retentive.cli import main
from retentive.gates.recording import RegistryNotRecorded
from retentive.registry import CHALLENGER, CHAMPION, open_registry
from retentive.registry.serving import promote, rollback
from retentive.state.home import ModelHome, is_home

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
COMMON = [
    "--config", str(ROOT / "configs" / "er.yaml"), "--threads", "1", "--set", "logger=false",
    "--set", "updater.init_args.batch_size=32", "--set", "trainer.max_epochs=2",
]  # fmt: skip
GATE = ["--gate", "max_drop=5", "--gate", "holdout=0.2"]


@pytest.fixture(scope="module")
def chunk_files(tmp_path_factory, mnist_train) -> Path:
    folder = tmp_path_factory.mktemp("home_cli_chunks")
    return write_gate_pipeline_chunks(folder, mnist_train, "retentive_gate_cost_home_cli")


def test_create_update_inspect_promote_rollback_with_the_registry_following(
    chunk_files,
    tmp_path,
    capsys,
    mlflow_uri,  # noqa: F811
):
    folder = tmp_path / "models" / "digits"  # absent: the first gated update makes it a home
    registry_flags = ["--registry", mlflow_uri, "--registry-model", "cli-home"]
    first = ["update", *COMMON, "--data", str(chunk_files / "chunk_0.npz"), "--output-state", str(folder)]
    assert main([*first, *GATE, *registry_flags]) == 0
    out = capsys.readouterr().out
    assert f"retentive update: created the model home {folder}" in out.splitlines()[0]
    assert is_home(folder)
    home = ModelHome(folder)
    later = ["--input-state", str(folder), "--output-state", str(folder), *GATE, *registry_flags]
    assert main(["update", *COMMON, "--data", str(chunk_files / "chunk_1.npz"), *later]) == 0
    good = home.current()
    assert main(["update", *COMMON, "--data", str(chunk_files / "chunk_2.npz"), *later]) == 4  # harmful: rejected
    assert "created the model home" not in capsys.readouterr().out
    challenger = home.challenger()
    registry = open_registry(mlflow_uri, model_name="cli-home")
    assert registry.aliases() == {
        CHAMPION: registry.version_of(good.id),
        CHALLENGER: registry.version_of(challenger.id),
    }

    assert main(["inspect", str(folder), "--history"]) == 0
    history = capsys.readouterr().out
    assert good.id in history and challenger.id in history

    assert main(["promote", str(folder), "--challenger", *registry_flags]) == 0
    assert home.current().id == challenger.id
    assert registry.aliases() == {CHAMPION: registry.version_of(challenger.id)}  # no challenger any more

    assert main(["rollback", str(folder), *registry_flags]) == 0
    assert f"to version {good.id}" in capsys.readouterr().out
    assert home.current().id == good.id
    assert registry.aliases() == {CHAMPION: registry.version_of(good.id)}

    # the Python API: the same glue
    assert promote(home, challenger.id, registry=registry).id == challenger.id
    assert registry.aliases()[CHAMPION] == registry.version_of(challenger.id)
    assert rollback(home, registry=registry).id == good.id
    assert registry.aliases()[CHAMPION] == registry.version_of(good.id)
    # a registry that never recorded the home: the home's commit stands, a warning names the version
    elsewhere = open_registry(mlflow_uri, model_name="cli-home-unrelated")
    with pytest.warns(RegistryNotRecorded, match=f"version {challenger.id} serves now"):
        promote(home, challenger.id, registry=elsewhere)
    assert home.current().id == challenger.id


def test_an_unreachable_registry_leaves_the_home_unchanged_and_single_folders_stay_single(
    chunk_files, tmp_path, capsys
):
    folder = tmp_path / "single"
    assert main(["update", *COMMON, "--data", str(chunk_files / "chunk_0.npz"), "--output-state", str(folder)]) == 0
    assert "created the model home" not in capsys.readouterr().out
    assert (folder / "manifest.json").is_file() and not is_home(folder)  # no gate: a single state folder
    home_folder = tmp_path / "homes" / "home"  # not beside the single folder (that would continue it)
    later = ["--output-state", str(home_folder), *GATE]
    assert main(["update", *COMMON, "--data", str(chunk_files / "chunk_0.npz"), *later]) == 0
    in_home = ["--input-state", str(home_folder), *later]
    assert main(["update", *COMMON, "--data", str(chunk_files / "chunk_1.npz"), *in_home]) == 0
    home = ModelHome(home_folder)
    serving = home.current()
    capsys.readouterr()
    assert main(["rollback", str(home_folder), "--registry", "http://127.0.0.1:9"]) == 1
    assert "unreachable" in capsys.readouterr().err
    assert home.current().id == serving.id  # checked before the home changed
    assert main(["rollback", str(folder), "--registry", "http://127.0.0.1:9"]) == 1
    assert "updated in place" in capsys.readouterr().err
