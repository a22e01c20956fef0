"""Refit (ModelUpdater.refit): re-training on the remaining memory as a new version, on real MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from state_helpers import der, tree_digest

from retentive.cli import main
from retentive.state import load_state
from retentive.state.home import ModelHome
from retentive.state.lineage import read_lineage
from retentive.updaters.chunks import memory_dataset
from retentive.updaters.refit import refit_record


@pytest.fixture(scope="module")
def home(tmp_path_factory, chunks) -> ModelHome:
    """A model home after two DER++ updates (memory 50 of 128 samples)."""
    home = ModelHome(tmp_path_factory.mktemp("refit") / "home").create()
    der(home.location, None, max_epochs=1).update(chunks[0], task_id=0)
    der(home.location, home.location, max_epochs=1).update(chunks[1], task_id=1)
    return home


def memory_loss(updater) -> float:
    data = memory_dataset(updater.memory)
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(updater.model(data.inputs), data.targets))


def test_a_refit_is_a_new_version_that_leaves_the_old_one_intact(home, tmp_path, capsys):
    served = home.current()
    old = home.fetch(tmp_path / "old", served.id)
    before = tree_digest(old)
    updater = der(home.location, home.location)
    memory, steps, loss = updater.memory.state_dict(), updater.learner.total_steps, memory_loss(updater)
    learner = updater.learner
    updater.refit(5)
    assert updater.learner is learner and learner.total_steps == steps + 5 * 2  # 50 samples, 32 a step
    assert memory_loss(updater) < loss  # five epochs on the memory fit it better
    refit = home.current()
    assert refit.id != served.id and home.history()[1].id == served.id  # the old one is the previous version
    assert tree_digest(home.fetch(tmp_path / "again", served.id)) == before
    state, parent = load_state(home.fetch(tmp_path / "new", refit.id)), load_state(old)
    assert refit_record(state.manifest) == {"epochs": 5, "samples": 50, "batch_size": 32}
    lineage = state.manifest["lineage"]
    assert lineage["parent"] == served.manifest_sha256 and lineage["update"] == 1 and lineage["task_id"] == 1
    assert state.manifest["updates_done"] == 2 and state.manifest["tasks_seen"] == parent.manifest["tasks_seen"]
    assert all(torch.equal(state.memory["storage"][k], v) for k, v in memory["storage"].items())
    assert any(not torch.equal(state.model[k], parent.model[k]) for k in state.model)
    assert refit_record(parent.manifest) is None
    assert main(["inspect", str(home.location), "--lineage"]) == 0
    assert 'refit     {"batch_size": 32, "epochs": 5, "samples": 50}' in capsys.readouterr().out
    home.rollback()  # the home's rules hold for a refit's version too


def test_two_refits_of_a_state_are_equal_bit_for_bit_and_the_next_update_builds_on_one(home, chunks, tmp_path):
    states = []
    for name in ("a", "b"):
        der(tmp_path / name, home.location).refit(2)
        states.append(load_state(tmp_path / name))
    assert states[0].model.keys() == states[1].model.keys()
    assert all(torch.equal(states[0].model[k], states[1].model[k]) for k in states[0].model)
    assert states[0].learner["learner"]["total_steps"] == states[1].learner["learner"]["total_steps"]
    der(tmp_path / "next", tmp_path / "a", max_epochs=1).update(chunks[0], task_id=2)  # components load as saved
    lineage = load_state(tmp_path / "next").manifest["lineage"]
    assert "refit" not in lineage and lineage["ancestors"][-1]["update"] == 1


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True, "3"])
def test_bad_epochs_are_refused_before_anything_is_written(home, tmp_path, epochs):
    with pytest.raises(ValueError, match=r"epochs >= 1 \(an int\), got"):
        der(tmp_path / "out", home.location).refit(epochs)
    assert not (tmp_path / "out").exists()


def test_an_empty_memory_is_refused_with_a_clear_error(tmp_path: Path):
    with pytest.raises(ValueError, match="cannot refit: the memory holds no samples"):
        der(tmp_path / "out").refit(1)
    assert not (tmp_path / "out").exists()


def test_an_in_place_refit_of_a_single_folder_can_be_rolled_back(home, tmp_path):
    folder = home.fetch(tmp_path / "single")  # a plain state folder, updated in place
    before = tree_digest(folder)
    der(folder, folder).refit(1)
    assert refit_record(load_state(folder).manifest) == {"epochs": 1, "samples": 50, "batch_size": 32}
    assert main(["rollback", str(folder)]) == 0
    assert tree_digest(folder) == before


def test_a_crafted_refit_record_is_reported_not_raised():
    assert read_lineage({"lineage": {"refit": 3}}).problems == ["refit is 3"]
    assert refit_record({"lineage": {"refit": [1]}}) is None and refit_record({"lineage": "x"}) is None


def test_packnet_refuses_a_refit_that_would_move_its_frozen_weights(tmp_path):
    from helpers import QUIET, sgd

    from retentive import PackNetModelUpdater
    from retentive.models import MLP, PackedNetwork

    updater = PackNetModelUpdater(PackedNetwork(MLP()), torch.nn.CrossEntropyLoss(), sgd(), memory_size=10, **QUIET)
    with pytest.raises(ValueError, match="cannot refit a PackNetModelUpdater: its gradient mask keeps earlier"):
        updater.refit(1)
