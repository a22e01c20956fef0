"""Renate 0.5.2's documented call patterns, with only the import changed.

Every updater class Renate ships (those retentive has today) is constructed with every argument
of Renate's signature at Renate's default (read from renate/defaults.py; max_epochs overridden
small for speed, the logger off), and ``update()`` is called the Renate way: an unreduced loss,
a string task id, collate functions, two chunks through state folders in two processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import retentive as renate_like  # the only change a Renate user makes: this import
from retentive.data import TensorChunk
from retentive.models import MLP
from retentive.state import load_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

#: Renate 0.5.2's arguments shared by every updater, at its defaults (renate/defaults.py)
COMMON = dict(
    learning_rate_scheduler=None,
    learning_rate_scheduler_interval="epoch",
    batch_size=32,
    input_state_folder=None,
    output_state_folder=None,
    max_epochs=50,
    train_transform=None,
    train_target_transform=None,
    test_transform=None,
    test_target_transform=None,
    metric=None,
    mode="min",
    logged_metrics=None,
    early_stopping_enabled=False,
    accelerator="auto",
    devices=None,
    strategy="ddp",
    precision="32",
    seed=0,
    deterministic_trainer=False,
    gradient_clip_val=None,
    gradient_clip_algorithm=None,
    mask_unused_classes=False,
)
BUFFER = dict(buffer_transform=None, buffer_target_transform=None)
REPLAY = dict(batch_memory_frac=0.5, loss_weight=1.0, ema_memory_update_gamma=1.0, loss_normalization=1, **BUFFER)
CLS = dict(
    stable_model_update_weight=0.999,
    plastic_model_update_weight=0.999,
    stable_model_update_probability=0.7,
    plastic_model_update_probability=0.9,
)
SUPER = dict(
    der_alpha=1.0,
    der_beta=1.0,
    sp_shrink_factor=0.95,
    sp_sigma=0.001,
    cls_alpha=0.1,
    cls_stable_model_update_weight=0.999,
    cls_plastic_model_update_weight=0.999,
    cls_stable_model_update_probability=0.7,
    cls_plastic_model_update_probability=0.9,
    pod_alpha=1.0,
    pod_distillation_type="spatial",
    pod_normalize=1,
)
#: class name -> its own arguments beyond COMMON, at Renate's defaults
RENATE_UPDATERS: dict[str, dict] = {
    "ExperienceReplayModelUpdater": dict(memory_size=32, alpha=1.0, **REPLAY),
    "DarkExperienceReplayModelUpdater": dict(memory_size=32, alpha=1.0, beta=1.0, **REPLAY),
    "PooledOutputDistillationExperienceReplayModelUpdater": dict(
        memory_size=32, alpha=1.0, distillation_type="spatial", normalize=1, **REPLAY
    ),
    "CLSExperienceReplayModelUpdater": dict(memory_size=32, alpha=0.5, beta=0.1, **CLS, **REPLAY),
    "SuperExperienceReplayModelUpdater": dict(memory_size=32, **SUPER, **REPLAY),
    "OfflineExperienceReplayModelUpdater": dict(
        memory_size=32, batch_memory_frac=0.5, loss_weight_new_data=None, **BUFFER
    ),
    "GDumbModelUpdater": dict(memory_size=32, batch_memory_frac=0.5, **BUFFER),
    "FineTuningModelUpdater": dict(),
    "JointModelUpdater": dict(),
    "LearningToPromptModelUpdater": dict(learner_kwargs=None, prompt_sim_loss_weight=0.5, **BUFFER),
    "LearningToPromptReplayModelUpdater": dict(
        memory_size=32, batch_memory_frac=0.5, loss_weight_new_data=None, prompt_sim_loss_weight=0.5, **BUFFER
    ),
    "SPeftModelUpdater": dict(learner_kwargs=None, **BUFFER),
    "RepeatedDistillationModelUpdater": dict(memory_size=32, seed=None, **BUFFER),
}
#: a tiny ViT (28x28 MNIST, 7x7 patches) for the transformer updaters; every other one gets an MLP
VIT = dict(
    image_size=28,
    patch_size=7,
    num_channels=1,
    hidden_dim=32,
    num_layers=1,
    num_heads=2,
    mlp_dim=32,
    dropout=0.0,
    attention_dropout=0.0,
)
MODELS = {
    "LearningToPromptModelUpdater": lambda: renate_like.LearningToPromptTransformer(**VIT),
    "LearningToPromptReplayModelUpdater": lambda: renate_like.LearningToPromptTransformer(**VIT),
    "SPeftModelUpdater": lambda: renate_like.SPromptTransformer(**VIT),
    "RepeatedDistillationModelUpdater": lambda: renate_like.VisionTransformer(**VIT),
}
FAST = dict(max_epochs=1, logger=False, enable_progress_bar=False)


class DictDataset(Dataset):
    """Samples as Renate's text pipelines give them: not tensors until a collate function runs."""

    def __init__(self, chunk: TensorChunk) -> None:
        self.chunk = chunk

    def __len__(self) -> int:
        return len(self.chunk)

    def __getitem__(self, i: int) -> dict:
        x, y = self.chunk[i][:2]
        return {"pixels": x.tolist(), "label": int(y)}


def collate(samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([s["pixels"] for s in samples]), torch.tensor([s["label"] for s in samples])


@pytest.fixture(scope="module")
def chunks(mnist_train):
    from conftest import small_split

    return small_split(mnist_train, 96)


def renate_updater(name: str, **overrides):
    arguments = {**COMMON, **RENATE_UPDATERS[name], **FAST, **overrides}
    loss = nn.CrossEntropyLoss(reduction="none")  # Renate passes losses unreduced
    model = MODELS.get(name, MLP)()
    return getattr(renate_like, name)(model, loss, partial(torch.optim.SGD, lr=0.05), **arguments)


@pytest.mark.parametrize("name", sorted(RENATE_UPDATERS))
def test_every_class_takes_every_renate_argument_and_updates_the_renate_way(name, chunks, tmp_path):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Renate's call pattern must not trip any warning of ours
        updater = renate_updater(name, output_state_folder=tmp_path / "s0")
    # Renate's defaults, recorded as given (max_epochs aside, overridden for speed)
    for argument, value in {**COMMON, **RENATE_UPDATERS[name]}.items():
        if argument not in ("max_epochs", "input_state_folder", "output_state_folder", "logger"):
            assert updater.hyperparameters.get(argument, value) == value or argument == "loss_normalization", argument
    assert (
        updater.trainer_kwargs["strategy"] == "auto" and updater.trainer_kwargs["devices"] == 1
    )  # one device: in process
    first = DictDataset(chunks[0].subset(torch.arange(64)))
    val = DictDataset(chunks[0].subset(torch.arange(64, 96)))
    updater.update(first, val, train_dataset_collate_fn=collate, val_dataset_collate_fn=collate, task_id="default_task")
    manifest = load_state(tmp_path / "s0").manifest
    assert manifest["tasks_seen"] == {"default_task": 64} and manifest["task_order"] == ["default_task"]


def test_renate_defaults_without_arguments():
    """A Renate user who passes nothing gets Renate's settings."""
    updater = renate_like.ExperienceReplayModelUpdater(
        MLP(), nn.CrossEntropyLoss(reduction="none"), partial(torch.optim.SGD, lr=0.05), memory_size=32, logger=False
    )
    assert updater.trainer_kwargs["max_epochs"] == 50
    assert updater.hyperparameters["strategy"] == "ddp" and updater.hyperparameters["precision"] == "32"
    assert updater.new_batch_size == 16 and updater.memory_batch_size == 16  # batch 32, frac 0.5
    assert updater.learner.scheduler_interval == "epoch" and updater.metric is None and updater.mode == "min"


WORKER = textwrap.dedent(
    """
    import json, sys, torch
    from functools import partial
    sys.path.insert(0, sys.argv[1])
    from test_renate_dropin import renate_updater, DictDataset, collate
    from conftest import small_split
    from retentive.data import load_mnist
    torch.set_num_threads(1)
    chunks = small_split(load_mnist("train"), 96)
    updater = renate_updater("DarkExperienceReplayModelUpdater", input_state_folder=sys.argv[2],
                             output_state_folder=sys.argv[3], mask_unused_classes=True)
    updater.update(DictDataset(chunks[1]), train_dataset_collate_fn=collate, task_id="second_task")
    """
)


def test_two_chunks_through_state_folders_in_two_processes(chunks, tmp_path):
    torch.manual_seed(0)
    renate_updater(
        "DarkExperienceReplayModelUpdater", output_state_folder=tmp_path / "s0", mask_unused_classes=True
    ).update(DictDataset(chunks[0]), train_dataset_collate_fn=collate, task_id="first_task")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            str(Path(__file__).resolve().parent),
            str(tmp_path / "s0"),
            str(tmp_path / "s1"),
        ],
        check=True,
        env=env,
    )
    state = load_state(tmp_path / "s1")
    assert state.manifest["task_order"] == ["first_task", "second_task"]
    assert state.manifest["tasks_seen"] == {"first_task": 96, "second_task": 96}
    assert state.memory["size"] == 32 and state.memory["seen"] == 192
    # the memory holds both chunks' classes (0/1 and 2/3) after the second update
    stored = set(state.memory["storage"]["targets"][:32].tolist())
    assert stored & {0, 1} and stored & {2, 3}
    # and the third process loads it as Renate's model would be loaded
    model = renate_like.load_model(MLP(), tmp_path / "s1")
    assert isinstance(model, nn.Module)


def test_inspect_shows_string_task_ids(chunks, tmp_path):
    from retentive.state.inspection import format_report, inspect_state

    renate_updater("FineTuningModelUpdater", output_state_folder=tmp_path / "s0").update(
        chunks[0], task_id="default_task"
    )
    assert "default_task" in format_report(inspect_state(tmp_path / "s0"))


def test_devices_none_and_strategy_none_train(chunks):
    """Renate's own tests pass devices=None / strategy=None."""
    updater = renate_updater("ExperienceReplayModelUpdater", devices=None, strategy=None)
    assert updater.trainer_kwargs["devices"] == 1 and updater.trainer_kwargs["strategy"] == "auto"
    updater.update(chunks[0], task_id="default_task")
    assert updater.updates_done == 1


def test_json_of_manifest_keeps_string_ids(chunks, tmp_path):
    renate_updater("ExperienceReplayModelUpdater", output_state_folder=tmp_path / "s0").update(chunks[0], task_id="a")
    manifest = json.loads((tmp_path / "s0" / "manifest.json").read_text())
    assert manifest["task_order"] == ["a"]
