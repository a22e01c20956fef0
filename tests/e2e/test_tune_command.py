"""``retentive tune``: the same search from YAML files, a progress line per finished trial and a
summary table; the next chunk's ``retentive update`` resumes from the winner."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from retentive.cli import main
from retentive.data import load_mnist_arrays

pytestmark = pytest.mark.slow

CONFIG = """\
updater:
  class_path: retentive.DarkExperienceReplayModelUpdater
  init_args: {memory_size: 50, batch_size: 16, alpha: 0.5, beta: 0.5}
model:
  class_path: retentive.models.MLP
  init_args: {hidden: [32]}
loss_fn: {class_path: torch.nn.CrossEntropyLoss}
optimizer:
  class_path: torch.optim.SGD
  init_args: {lr: 0.1}
trainer: {max_epochs: 1, accelerator: cpu, enable_progress_bar: false}
logger: false
seed: 0
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("RETENTIVE_DATA", os.environ.get("RETENTIVE_DATA", "/work/shared/data"))
    images, labels = load_mnist_arrays("train")
    g = torch.Generator().manual_seed(0)
    (tmp_path / "val").mkdir()
    for chunk, classes in enumerate([(0, 1), (2, 3)]):
        index = torch.nonzero((labels == classes[0]) | (labels == classes[1])).flatten()
        index = index[torch.randperm(len(index), generator=g)]
        train, val = index[:400].sort().values, index[400:600].sort().values
        np.savez(tmp_path / f"train_{chunk}.npz", inputs=images[train].numpy(), targets=labels[train].numpy())
        np.savez(tmp_path / "val" / f"val_{chunk}.npz", inputs=images[val].numpy(), targets=labels[val].numpy())
    (tmp_path / "der.yaml").write_text(CONFIG)
    (tmp_path / "space.yaml").write_text("optimizer.init_args.lr: {loguniform: [0.0001, 0.3]}\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_retentive_tune_picks_the_best_trial_and_the_next_update_resumes_from_it(files, capsys):
    code = main(
        [
            "tune",
            "--config",
            "der.yaml",
            "--space",
            "space.yaml",
            "--data",
            "train_0.npz",
            "--val-data",
            "val/val_0.npz",
            "--output-state",
            "state/chunk_0",
            "--workers",
            "2",
            "--max-trials",
            "2",
            "--seed",
            "1",
            "--threads",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    progress = [line for line in out.splitlines() if line.startswith("retentive tune: trial ")]
    assert len(progress) == 2 and all("completed: optimizer.init_args.lr=" in line for line in progress)
    manifest = json.loads((files / "state" / "chunk_0" / "manifest.json").read_text())
    trials = {t["trial_id"]: t for t in manifest["search"]["trials"]}
    winner = manifest["search"]["winner"]
    assert len(trials) == 2 and winner["val/accuracy"] == max(t["val/accuracy"] for t in trials.values())
    table = [line for line in out.splitlines() if line.startswith("*")]
    assert len(table) == 1 and table[0].split()[0] == f"*{winner['trial_id']}"  # the summary marks the winner
    with open(files / "state" / "chunk_0" / "hpo.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["trial_id"] for r in rows) == ["0", "1"] and {r["update_id"] for r in rows} == {"0"}
    assert sorted(p.name for p in (files / "state").iterdir()) == ["chunk_0"]  # no trial folders left

    code = main(
        [
            "update",
            "--config",
            "der.yaml",
            "--data",
            "train_1.npz",
            "--val-data",
            "val",
            "--input-state",
            "state/chunk_0",
            "--output-state",
            "state/chunk_1",
        ]
    )
    assert code == 0
    later = json.loads((files / "state" / "chunk_1" / "manifest.json").read_text())
    assert later["updates_done"] == 2


def test_a_space_key_the_config_does_not_take_is_one_error_and_nothing_is_written(files, capsys):
    (files / "space.yaml").write_text("optimizer.init_args.lrr: {loguniform: [0.0001, 0.3]}\n")
    code = main(
        [
            "tune",
            "--config",
            "der.yaml",
            "--space",
            "space.yaml",
            "--data",
            "train_0.npz",
            "--val-data",
            "val",
            "--output-state",
            "state/chunk_0",
            "--max-trials",
            "2",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "optimizer.init_args.lrr" in err[0], err
    assert not (files / "state").exists()


def test_tune_help_imports_neither_torch_lightning_nor_syne_tune():
    probe = (
        "import sys\nfrom retentive.cli import main\n"
        "try:\n    main(['tune', '--help'])\nexcept SystemExit:\n    pass\n"
        "import retentive.training, retentive.training.job\n"
        "print(sorted(m for m in ('torch', 'pytorch_lightning', 'lightning', 'syne_tune') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "--space SPACE" in result.stdout and "--workers N" in result.stdout
