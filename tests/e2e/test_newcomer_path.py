"""What a newcomer met on a fresh clone (issue 24, findings 1-3): a forgotten input state folder is
said aloud in Python too, the command line suggests the newest state folder by what the states say
of themselves, and a Renate state folder points to the command that converts it."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from helpers import QUIET, sgd
from torch import nn

from retentive import ExperienceReplayModelUpdater, StateError
from retentive.cli import main
from retentive.data import TensorChunk
from retentive.data.files import write_chunk
from retentive.models import MLP
from retentive.state import load_state

ROOT = Path(__file__).resolve().parents[2]
ER = ROOT / "configs" / "er.yaml"


def chunk(seed: int, n: int = 32) -> TensorChunk:
    g = torch.Generator().manual_seed(seed)
    return TensorChunk(torch.rand(n, 1, 28, 28, generator=g), torch.randint(10, (n,), generator=g))


def update(output: Path, input_folder: Path | None = None, seed: int = 0) -> ExperienceReplayModelUpdater:
    updater = ExperienceReplayModelUpdater(
        MLP(hidden=(8,)),
        nn.CrossEntropyLoss(),
        sgd(),
        memory_size=16,
        batch_size=16,
        input_state_folder=input_folder,
        output_state_folder=output,
        **QUIET,
    )
    updater.update(chunk(seed))
    return updater


def pipeline(parent: Path, names: list[str]) -> list[Path]:
    """One update per name, each continuing from the one before."""
    previous = None
    for seed, name in enumerate(names):
        update(parent / name, previous, seed)
        previous = parent / name
    return [parent / name for name in names]


# ------------------------------------------------------------------ 1. a forgotten input, in Python
def test_a_second_update_without_its_input_warns_naming_the_earlier_folders_and_starts_fresh(tmp_path):
    pipeline(tmp_path, ["chunk_0", "chunk_1"])
    with pytest.warns(UserWarning, match=r"holds state folders of earlier updates \(chunk_0, chunk_1\)") as caught:
        update(tmp_path / "chunk_2")
    assert f"input_state_folder={str(tmp_path / 'chunk_1')!r}" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller's line, not retentive's
    assert load_state(tmp_path / "chunk_2").manifest["updates_done"] == 1  # Renate's semantics: a new model


def test_a_first_update_and_a_continued_one_do_not_warn(tmp_path, recwarn):
    pipeline(tmp_path, ["chunk_0", "chunk_1"])
    (tmp_path / "other").mkdir()
    update(tmp_path / "other" / "chunk_0")  # alone in its folder
    assert not [w for w in recwarn if "earlier updates" in str(w.message)]


# ------------------------------------------------------------------ 2. the newest state, not the last name
def test_the_command_line_suggests_the_newest_state_by_its_update_counter(tmp_path, capsys):
    pipeline(tmp_path, ["chunk_8", "chunk_9", "chunk_10"])
    write_chunk(tmp_path / "next.npz", chunk(5))
    command = ["update", "--config", str(ER), "--data", str(tmp_path / "next.npz"), "--set", "logger=false"]
    assert main([*command, "--output-state", str(tmp_path / "chunk_11")]) == 1
    line = capsys.readouterr().err.strip()
    assert f"pass --input-state {str(tmp_path / 'chunk_10')!r} to continue" in line, line
    assert "(chunk_8, chunk_9, chunk_10)" in line


def test_states_are_ordered_by_counter_then_time_then_natural_name(tmp_path):
    from retentive.state.discovery import earlier_states

    # the counter beats the name: "a_later" continued "b_first"
    first, later = pipeline(tmp_path / "counted", ["b_first", "a_later"])
    assert earlier_states(tmp_path / "counted" / "new") == [first, later]
    # the time beats the name among equal counters
    for name, created in (("chunk_2", "2026-01-02T00:00:00+00:00"), ("chunk_10", "2026-01-01T00:00:00+00:00")):
        shutil.copytree(first, tmp_path / "timed" / name)
        manifest = tmp_path / "timed" / name / "manifest.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "created": created}))
    assert [p.name for p in earlier_states(tmp_path / "timed" / "new")] == ["chunk_10", "chunk_2"]
    # equal counters and times: natural order (copies of one state)
    for name in ("chunk_9", "chunk_10", "chunk_8"):
        shutil.copytree(first, tmp_path / "copies" / name)
    assert [p.name for p in earlier_states(tmp_path / "copies" / "new")] == ["chunk_8", "chunk_9", "chunk_10"]


# ------------------------------------------------------------------ 3. a Renate folder: the converter, by name
def renate_er_folder(folder: Path, size: int = 4) -> MLP:
    """The smallest folder laid out as Renate 0.5.2 writes one for an ER learner."""
    (folder / "memory_buffer").mkdir(parents=True)
    model = MLP(hidden=(8,))
    torch.save(dict(model.state_dict()), folder / "model.ckpt")
    for i, (x, y) in enumerate(chunk(0, size)):
        torch.save((x, y), folder / "memory_buffer" / f"{i}.pt")
    buffer = {"buffer_class_name": "ReservoirBuffer", "max_size": 16, "seed": 0, "count": size}
    buffer.update(indices={i: (0, i) for i in range(size)}, data_point_prototype=chunk(0, 1)[0], metadata={})
    torch.save({"memory_buffer": buffer, "hyper_parameters": {"memory_size": 16}}, folder / "learner.ckpt")
    return model


def test_a_renate_state_folder_names_the_import_command_that_converts_it(tmp_path, capsys):
    source = tmp_path / "renate state"  # a space: the command must quote it
    renate_er_folder(source)
    with pytest.raises(StateError, match="retentive import-renate") as caught:
        update(tmp_path / "out", source)
    command = str(caught.value).split("`")[1]
    words = shlex.split(command)
    assert words[:2] == ["retentive", "import-renate"] and words[2] == str(source)
    converted = Path(words[3])
    assert not converted.exists() and converted.parent == source.parent
    # the command, run as shown, converts it; the folder it wrote is then an input state
    assert main([*words[1:], "--updater", "ExperienceReplayModelUpdater"]) == 0
    assert update(tmp_path / "out", converted).updates_done == 2
    # the command line says the same with its own flag name
    write_chunk(tmp_path / "next.npz", chunk(5))
    command_line = ["update", "--config", str(ER), "--data", str(tmp_path / "next.npz"), "--set", "logger=false"]
    capsys.readouterr()
    assert main([*command_line, "--input-state", str(source), "--output-state", str(tmp_path / "cli")]) == 1
    line = capsys.readouterr().err.strip()
    assert "retentive import-renate" in line and "as --input-state" in line, line


# ------------------------------------------------------------------ 4. TensorBoard: one axis, one run per update
def scalars(run: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_every_tensorboard_name_continues_across_updates_in_one_run_per_update(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default logger writes into ./tb_logs
    previous = None
    for index in range(2):
        updater = ExperienceReplayModelUpdater(
            MLP(hidden=(8,)),
            nn.CrossEntropyLoss(),
            sgd(),
            memory_size=16,
            batch_size=16,
            max_epochs=2,
            log_every_n_steps=2,
            accelerator="cpu",
            devices=1,
            input_state_folder=previous,
            output_state_folder=Path("state") / f"chunk_{index}",
        )
        updater.update(chunk(index), val_dataset=chunk(9, 16))
        previous = Path("state") / f"chunk_{index}"
    runs = tmp_path / "tb_logs" / "ExperienceReplayModelUpdater"
    assert sorted(p.name for p in runs.iterdir()) == ["chunk_0", "chunk_1"]  # not version_0, version_1
    first, second = scalars(runs / "chunk_0"), scalars(runs / "chunk_1")
    for name in ("train_loss", "val_loss", "epoch", "loss/total", "val/accuracy"):
        assert name in first and name in second, (name, sorted(second))
    last_of_first = max(step for steps in first.values() for step in steps)
    assert last_of_first >= 2 * 2  # two epochs of two steps
    for name, steps in second.items():  # every name, Renate's per-epoch ones too, continues the axis
        assert min(steps) > last_of_first, (name, steps, last_of_first)
    bar = capsys.readouterr().out  # Lightning's bar writes to stdout
    assert "Epoch 1" in bar and "v_num" not in bar  # the progress bar shows, without the run's version
