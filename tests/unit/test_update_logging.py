"""What an update tells TensorBoard and the manifest: losses even for short updates, every
hyperparameter, and the precision Lightning actually used."""

from __future__ import annotations

from functools import partial

import torch
from recording_logger import RecordingLogger as Recording
from third_party import chunks

import retentive as R
from retentive.models import MLP
from retentive.state import load_state


def _updater(logger, **kwargs):
    torch.manual_seed(0)
    return R.DarkExperienceReplayModelUpdater(
        MLP(hidden=(8,)),
        torch.nn.CrossEntropyLoss(),
        partial(torch.optim.SGD, lr=0.1),
        memory_size=30,
        batch_size=16,
        logger=logger,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        max_epochs=1,
        **kwargs,
    )


def test_an_update_shorter_than_the_logging_interval_still_logs_its_losses():
    logger = Recording()
    updater = _updater(logger, log_every_n_steps=50)
    updater.update(chunks()[0])  # 96 samples, 8 new a step: 12 steps < 50
    steps = updater.learner.total_steps
    assert 0 < steps < 50
    logged = [(step, m) for step, m in logger.metrics if "loss/total" in m]
    assert [step for step, _ in logged] == [steps]
    assert {"loss/new", "loss/total", "lr", "memory/size"} <= set(logged[0][1])


def test_hyperparameters_go_to_the_logger():
    logger = Recording()
    updater = _updater(logger, alpha=0.3)
    updater.update(chunks()[0])
    assert logger.hparams and logger.hparams[-1]["alpha"] == 0.3 and logger.hparams[-1]["memory_size"] == 30


def test_the_manifest_records_the_precision_lightning_used(tmp_path):
    # on a CPU Lightning runs "16-mixed" as bf16-mixed; the manifest says both
    updater = _updater(False, precision="16-mixed", output_state_folder=tmp_path / "s")
    updater.update(chunks()[0])
    manifest = load_state(tmp_path / "s").manifest
    assert manifest["hyperparameters"]["precision"] == "16-mixed"
    assert manifest["effective_precision"] == "bf16-mixed"
    assert manifest["random_streams"].startswith("numpy-seedsequence-v1")
