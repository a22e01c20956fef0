"""resume=True: an update interrupted mid-way continues from its last completed epoch and writes the
state an uninterrupted run writes."""

from __future__ import annotations

import json
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from state_helpers import der, hidden_entries, same_snapshot, snapshot

import retentive.updaters.persistence as persistence_module
from retentive import StateError
from retentive.state import load_state
from retentive.state.resume import ResumeWarning, checkpoint_root, discard_checkpoints, has_checkpoint

pytestmark = pytest.mark.slow


class Interrupt(Exception):
    """Stands in for a crash (the kill test does the real thing with SIGKILL)."""


class CrashAtEpoch(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise Interrupt(f"crash in epoch {self.epoch}")


class CountSteps(pl.Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_end(self, *args) -> None:
        self.steps += 1


SETTINGS = dict(
    max_epochs=3,
    optimizer=partial(torch.optim.SGD, lr=0.03, momentum=0.9),
    learning_rate_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
)


@pytest.fixture(scope="module")
def setup(split_small, tmp_path_factory):
    """A first state, the second chunk, and the output an uninterrupted 3-epoch update writes."""
    train, _ = split_small
    chunk0, chunk1 = train[0].subset(torch.arange(64)), train[1].subset(torch.arange(160))
    root = tmp_path_factory.mktemp("resume")
    der(root / "s0").update(chunk0, task_id=0)
    der(root / "clean", root / "s0", **SETTINGS).update(chunk1, task_id=1)
    return root / "s0", chunk1, root / "clean"


def _same_state(a, b) -> bool:
    sa, sb = load_state(a), load_state(b)
    return same_snapshot(
        {"m": sa.model, "mem": sa.memory, "l": sa.learner}, {"m": sb.model, "mem": sb.memory, "l": sb.learner}
    )


def test_an_interrupted_update_resumes_from_its_last_epoch_and_ends_identical(setup, tmp_path):
    state0, chunk1, clean = setup
    output = tmp_path / "s1"
    crashed = der(output, state0, resume=True, callbacks=[CrashAtEpoch(1)], **SETTINGS)
    before = snapshot(crashed)
    with pytest.raises(Interrupt):
        crashed.update(chunk1, task_id=1)
    assert same_snapshot(snapshot(crashed), before)
    assert not output.exists() and has_checkpoint(output)
    assert [p.name for p in checkpoint_root(output).iterdir()] == ["epoch-0001"]  # epoch 0 done, epoch 1 lost
    with pytest.raises(StateError, match="resume checkpoint of an unfinished update"):
        load_state(checkpoint_root(output) / "epoch-0001")

    steps = CountSteps()
    der(output, state0, resume=True, callbacks=[steps], **SETTINGS).update(chunk1, task_id=1)
    assert steps.steps == 2 * 10  # two epochs of 160 / 16 new samples remained: epoch 0 was not redone
    assert _same_state(output, clean)  # weights, memory, optimizer-driven trajectory: bit for bit
    assert load_state(output).manifest["kind"] == "state"
    assert hidden_entries(tmp_path) == []  # checkpoints and lock removed on success


def test_a_crash_during_the_save_resumes_without_training_again(setup, tmp_path, monkeypatch):
    state0, chunk1, clean = setup
    output = tmp_path / "s1"
    real_save = persistence_module.save_state

    def crash(*args, **kwargs):
        raise Interrupt("killed while saving")

    monkeypatch.setattr(persistence_module, "save_state", crash)
    with pytest.raises(Interrupt):
        der(output, state0, resume=True, **SETTINGS).update(chunk1, task_id=1)
    assert not output.exists()
    final = load_state(checkpoint_root(output) / "epoch-0003", allow_checkpoint=True)
    assert final.manifest["resume"]["complete"] is True
    monkeypatch.setattr(persistence_module, "save_state", real_save)
    steps = CountSteps()
    der(output, state0, resume=True, callbacks=[steps], **SETTINGS).update(chunk1, task_id=1)
    assert steps.steps == 0
    assert _same_state(output, clean)


def test_a_checkpoint_of_another_update_is_refused(setup, tmp_path, split_small):
    state0, chunk1, _ = setup
    output = tmp_path / "s1"
    with pytest.raises(Interrupt):
        der(output, state0, resume=True, callbacks=[CrashAtEpoch(1)], **SETTINGS).update(chunk1, task_id=1)
    other_chunk = split_small[0][2].subset(torch.arange(160))
    with pytest.raises(StateError, match=r"cannot resume .* different update \(data: checkpoint"):
        der(output, state0, resume=True, **SETTINGS).update(other_chunk, task_id=1)
    with pytest.raises(StateError, match="task_id: checkpoint 1, this update 2"):
        der(output, state0, resume=True, **SETTINGS).update(chunk1, task_id=2)
    changed = {**SETTINGS, "max_epochs": 4}
    with pytest.raises(StateError, match="hyperparameters"):
        der(output, state0, resume=True, **changed).update(chunk1, task_id=1)
    assert has_checkpoint(output)  # refused, not destroyed
    discard_checkpoints(output)
    assert not has_checkpoint(output) and hidden_entries(tmp_path) == []


def test_a_damaged_checkpoint_is_skipped_and_the_update_starts_over(setup, tmp_path):
    state0, chunk1, clean = setup
    output = tmp_path / "s1"
    with pytest.raises(Interrupt):
        der(output, state0, resume=True, callbacks=[CrashAtEpoch(2)], **SETTINGS).update(chunk1, task_id=1)
    model_file = checkpoint_root(output) / "epoch-0002" / "model.pt"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    steps = CountSteps()
    with pytest.warns(ResumeWarning, match="does not match its manifest checksum"):
        der(output, state0, resume=True, callbacks=[steps], **SETTINGS).update(chunk1, task_id=1)
    assert steps.steps == 3 * 10  # every epoch redone
    assert _same_state(output, clean)


def test_without_resume_no_checkpoint_is_written_and_resume_needs_an_output(setup, tmp_path):
    state0, chunk1, clean = setup
    with pytest.raises(Interrupt):
        der(tmp_path / "s1", state0, callbacks=[CrashAtEpoch(1)], **SETTINGS).update(chunk1, task_id=1)
    assert hidden_entries(tmp_path) == []
    with pytest.raises(ValueError, match="resume=True needs an output_state_folder"):
        der(None, state0, resume=True)
    manifest = json.loads((clean / "manifest.json").read_text())
    assert "resume" not in manifest and manifest["kind"] == "state"
