"""What a newcomer met on a fresh clone (issue 24, findings 1-3): a forgotten input state folder is
said aloud in Python too, the command line suggests the newest state folder by what the states say
of themselves, and a Renate state folder points to the command that converts it."""

from __future__ import annotations

import json
import shlex
import shutil
import warnings
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

pytestmark = pytest.mark.slow

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
    # asked for on purpose, the fresh start is not warned about as well
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*command, "--output-state", str(tmp_path / "fresh"), "--from-scratch", "--threads", "1"]) == 0
    assert not [w for w in caught if "earlier updates" in str(w.message)]


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
    # a crafted manifest (a counter that is no number, a time that is no text) orders as the oldest
    manifest = tmp_path / "copies" / "chunk_8" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "updates_done": "many", "created": [1]}))
    assert [p.name for p in earlier_states(tmp_path / "copies" / "new")] == ["chunk_8", "chunk_9", "chunk_10"]
    manifest = tmp_path / "copies" / "chunk_10" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "updates_done": None}))
    assert [p.name for p in earlier_states(tmp_path / "copies" / "new")][0] in ("chunk_8", "chunk_10")
    assert [p.name for p in earlier_states(tmp_path / "copies" / "new")][-1] == "chunk_9"


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


# ------------------------------------------------------------------ 5. the config typo, iCaRL's scores, the job
def test_a_config_typo_lists_only_what_the_updaters_init_args_may_hold(tmp_path, capsys):
    config = ER.read_text().replace("batch_size: 64", "batch_sise: 64")
    (tmp_path / "typo.yaml").write_text(config)
    write_chunk(tmp_path / "next.npz", chunk(5))
    command = ["update", "--config", str(tmp_path / "typo.yaml"), "--data", str(tmp_path / "next.npz")]
    assert main([*command, "--output-state", str(tmp_path / "out")]) == 1
    line = capsys.readouterr().err.strip()
    listed = line.split("expected one of: ")[1].split(", ")
    assert "did you mean 'batch_size'?" in line and "batch_size" in listed and "memory_size" in listed, line
    for elsewhere in ("--input-state", "--output-state", "input_state_folder", "model", "optimizer", "max_epochs"):
        assert elsewhere not in listed, (elsewhere, line)


def test_the_icarl_classifier_scores_every_class_of_the_model_without_a_graph(tmp_path):
    from retentive import ICaRLModelUpdater
    from retentive.components.distillation import icarl_classifier

    seen = chunk(0, 64)
    seen = TensorChunk(seen.inputs, seen.targets % 8)  # eight of the model's ten classes
    updater = ICaRLModelUpdater(
        MLP(hidden=(8,)),
        nn.CrossEntropyLoss(),
        sgd(),
        memory_size=16,
        batch_size=16,
        output_state_folder=tmp_path / "s",
        **QUIET,
    )
    updater.update(seen)
    scores = icarl_classifier(MLP(hidden=(8,)), tmp_path / "s")(seen.inputs[:8])
    assert scores.shape == (8, 10)  # (N, classes), as the model's logits
    assert scores.grad_fn is None and not scores.requires_grad
    assert torch.isinf(scores[:, 8:]).all() and torch.isfinite(scores[:, :8]).all()  # no exemplars: never predicted


@pytest.mark.skipif(
    not __import__("os").environ.get("RETENTIVE_DATA") and not Path("/work/shared/data/mnist").is_dir(),
    reason="real MNIST idx files are needed",
)
def test_run_training_job_prints_its_epochs_and_leaves_only_its_output_in_the_current_folder(
    tmp_path, monkeypatch, capsys
):
    from retentive.training import run_training_job

    monkeypatch.setenv("RETENTIVE_DATA", __import__("os").environ.get("RETENTIVE_DATA", "/work/shared/data"))
    monkeypatch.chdir(tmp_path)
    result = run_training_job(
        mode="max",
        config_space={"optimizer": "SGD", "learning_rate": 0.05, "memory_size": 50, "batch_size": 16, "n_train": 64},
        metric="val_accuracy",
        backend="local",
        updater="ER",
        max_epochs=2,
        chunk_id=0,
        config_file=str(ROOT / "tests" / "support" / "hpo_config.py"),
        output_state_url="state_chunk_0",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state_chunk_0"]  # no renate_working_dir/
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[1].strip() for line in lines[:2]] == ["epoch 1/2", "epoch 2/2"], lines
    assert all(line.startswith("run_training_job: ") for line in lines) and len(lines) == 3, lines
    best = result.winner.best("val_accuracy", "max")
    assert f"val_accuracy {best:.4f}; state -> state_chunk_0" in lines[-1]


def test_a_searchs_finished_trials_print_one_line_each(capsys):
    from retentive.training.hpo_record import TrialRecord
    from retentive.training.progress import trial_lines
    from retentive.training.trial import JOB_FILE_KEY

    trial = TrialRecord(2, {"learning_rate": 0.01, JOB_FILE_KEY: "/tmp/job.json"}, status="Completed")
    trial.results = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.75}]
    trial_lines("val_accuracy", "max")(trial, [trial])
    assert capsys.readouterr().out == "run_training_job: trial 2 completed (learning_rate=0.01): val_accuracy 0.7500\n"


# ------------------------------------------------------------------ 6. the passed model and the state's weights
def test_the_state_folders_weights_replace_the_passed_models_and_the_docstring_says_it_deviates(tmp_path):
    """Renate's test_model_passed_is_used_as_is asserts the opposite; retentive keeps its rule and says so."""
    import inspect

    first = update(tmp_path / "chunk_0")
    passed = MLP(hidden=(8,))
    untouched = {k: v.clone() for k, v in passed.state_dict().items()}
    updater = ExperienceReplayModelUpdater(
        passed, nn.CrossEntropyLoss(), sgd(), memory_size=16, input_state_folder=tmp_path / "chunk_0", **QUIET
    )
    assert updater.model is passed  # the same object, with the state's weights
    for name, value in passed.state_dict().items():
        assert torch.equal(value, first.model.state_dict()[name]) and not torch.equal(value, untouched[name])
    from retentive.updaters.base import ModelUpdater

    doc = inspect.getdoc(ModelUpdater) or ""
    argument = doc.split("input_state_folder:")[1].split("output_state_folder:")[0]
    assert "deviation from Renate" in argument and "as is" in argument, argument
