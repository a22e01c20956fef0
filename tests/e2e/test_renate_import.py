"""``retentive import-renate``: a Renate 0.5.2 state folder (as Renate lays it out) becomes a v1
state folder an updater continues from; a file that needs unpickling code is refused, by name."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from helpers import QUIET, sgd
from torch import nn

from retentive import DarkExperienceReplayModelUpdater, ExperienceReplayModelUpdater, StateError
from retentive.cli import main
from retentive.models import MLP
from retentive.state import load_state
from retentive.state.renate import import_renate

pytestmark = pytest.mark.slow


class RunsCode:
    """What a hostile or merely custom pickle holds: loading it would import and run this."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def renate_folder(
    root: Path, size: int = 30, capacity: int = 40, logits: bool = True, seen: int = 100
) -> tuple[Path, MLP, torch.Tensor, torch.Tensor]:
    """A folder laid out as Renate 0.5.2 writes one for a DER learner."""
    torch.manual_seed(0)
    folder = root / "renate_state"
    (folder / "memory_buffer").mkdir(parents=True)
    model = MLP()
    weights = dict(model.state_dict())
    weights["_extra_state"] = torch.tensor(list(pickle.dumps({"constructor_arguments": {}})), dtype=torch.uint8)
    torch.save(weights, folder / "model.ckpt")
    x, y = torch.rand(size, 1, 28, 28), torch.randint(10, (size,))
    for i in range(size):
        torch.save((x[i], y[i]), folder / "memory_buffer" / f"{i}.pt")
    metadata = {"outputs": torch.randn(capacity, 10)} if logits else {}
    torch.save(
        {
            "epoch": 3,
            "global_step": 120,
            "pytorch-lightning_version": "1.8.6",
            "hyper_parameters": {"memory_size": capacity, "batch_size": 32},
            "memory_buffer": {
                "buffer_class_name": "ReservoirBuffer",
                "max_size": capacity,
                "seed": 0,
                "count": seen,
                "indices": {i: (0, i) for i in range(size)},
                "data_point_prototype": (x[0], y[0]),
                "metadata": metadata,
            },
        },
        folder / "learner.ckpt",
    )
    return folder, model, x, y


def test_import_then_continue_with_der(tmp_path, mnist_train):
    from conftest import small_split

    source, model, x, y = renate_folder(tmp_path)
    import_renate(source, tmp_path / "imported")
    state = load_state(tmp_path / "imported")
    assert state.manifest["updater"] == "DarkExperienceReplayModelUpdater"
    assert state.manifest["imported_from"]["dropped_model_keys"] == ["_extra_state"]
    assert set(state.manifest["imported_from"]["files"]) >= {"model.ckpt", "learner.ckpt", "memory_buffer/29.pt"}
    updater = DarkExperienceReplayModelUpdater(
        MLP(),
        nn.CrossEntropyLoss(reduction="none"),
        sgd(),
        memory_size=40,
        input_state_folder=tmp_path / "imported",
        **QUIET,
    )
    assert all(torch.equal(updater.model.state_dict()[k], v) for k, v in model.state_dict().items())
    assert len(updater.memory) == 30 and updater.memory.seen == 100
    assert torch.equal(updater.memory.storage["inputs"][:30], x) and torch.equal(
        updater.memory.storage["targets"][:30], y
    )
    updater.update(small_split(mnist_train, 64)[1], task_id="next")
    assert updater.updates_done == 2


def test_import_through_the_command_line_for_er(tmp_path, capsys):
    source, *_ = renate_folder(tmp_path, logits=False)
    assert main(["import-renate", str(source), str(tmp_path / "er"), "--updater", "ExperienceReplayModelUpdater"]) == 0
    ExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(), sgd(), memory_size=40, input_state_folder=tmp_path / "er", **QUIET
    )
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("victim", ["model.ckpt", "learner.ckpt", "memory_buffer/7.pt"])
def test_a_code_running_pickle_is_refused_naming_the_file_before_anything_is_written(tmp_path, victim, capsys):
    source, *_ = renate_folder(tmp_path)
    torch.save({"state_dict": {}, "payload": RunsCode()}, source / victim)
    with pytest.raises(
        StateError, match=rf"{victim.split('/')[-1]}' cannot be read without running the code its pickle names"
    ):
        import_renate(source, tmp_path / "imported")
    assert not (tmp_path / "imported").exists()
    assert "this ran" not in capsys.readouterr().out
    assert main(["import-renate", str(source), str(tmp_path / "imported")]) == 1
    assert "cannot be read without running the code" in capsys.readouterr().err


def test_der_import_of_a_buffer_without_logits_is_refused(tmp_path):
    source, *_ = renate_folder(tmp_path, logits=False)
    with pytest.raises(StateError, match="needs the logits stored with each sample"):
        import_renate(source, tmp_path / "imported", updater="DarkExperienceReplayModelUpdater")
    assert not (tmp_path / "imported").exists()


def test_not_a_renate_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StateError, match="model.ckpt is missing"):
        import_renate(tmp_path / "empty", tmp_path / "imported")
    with pytest.raises(StateError, match="does not exist"):
        import_renate(tmp_path / "nope", tmp_path / "imported")
