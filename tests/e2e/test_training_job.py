"""run_training_job (Renate's entry point): a 3-trial learning-rate search on a Split-MNIST chunk
with 2 workers picks the best validation accuracy, promotes it with hpo.csv, and the next chunk
resumes from the winner; Renate's example runs with the import changed."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import runpy
import shutil
from pathlib import Path

import pytest

from retentive.data import load_mnist, split_mnist, subsample
from retentive.evaluation import accuracy
from retentive.models import MLP
from retentive.state import load_state
from retentive.training import run_training_job

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "tests" / "support" / "hpo_config.py")
pytestmark = pytest.mark.skipif(
    not os.environ.get("RETENTIVE_DATA") and not Path("/work/shared/data/mnist").is_dir(),
    reason="real MNIST idx files are needed",
)
pytestmark = [pytestmark, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _mnist(monkeypatch):
    monkeypatch.setenv("RETENTIVE_DATA", os.environ.get("RETENTIVE_DATA", "/work/shared/data"))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _val_accuracy(state: Path, chunk_id: int, seed: int) -> float:
    """The promoted model's accuracy on the job's validation set (tests/hpo_config.py), recomputed
    from the state folder."""
    chunks = split_mnist(load_mnist("train"))
    val = [subsample(c, 200, seed=seed + 1) for c in chunks[: chunk_id + 1]]
    model = MLP(hidden=(32,))
    model.load_state_dict(load_state(state).model)
    return sum(accuracy(model, v) * len(v) for v in val) / sum(len(v) for v in val)


def _seeded_draws(space: dict, seed: int) -> list[float]:
    """The three learning rates a random search seeded with ``seed`` draws (Syne Tune 0.16 samples
    with numpy's global generator, which the search seeds)."""
    import numpy as np
    from syne_tune.optimizer.baselines import RandomSearch

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        searcher = RandomSearch(space, metrics=["val_accuracy"], do_minimize=False, random_seed=seed)
        return [searcher.suggest().config["learning_rate"] for _ in range(3)]
    finally:
        np.random.set_state(state)


def _rows(state: Path) -> list[dict[str, str]]:
    with open(state / "hpo.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_search_picks_the_best_trial_writes_hpo_csv_and_the_next_chunk_resumes_from_it(tmp_path, monkeypatch):
    from syne_tune.config_space import loguniform

    monkeypatch.chdir(tmp_path)
    space = {"optimizer": "SGD", "learning_rate": loguniform(1e-4, 0.3), "memory_size": 50, "batch_size": 16}
    finished = []
    first = run_training_job(
        mode="max",
        config_space=space,
        metric="val_accuracy",
        backend="local",
        updater="DER",
        max_epochs=1,
        chunk_id=0,
        config_file=CONFIG,
        output_state_url=str(tmp_path / "chunk_0"),
        working_directory=str(tmp_path / "work"),
        n_workers=2,
        max_num_trials_finished=3,
        seed=3,
        threads=1,
        progress=lambda trial, trials: finished.append(trial.trial_id),
    )
    values = {t.trial_id: t.best("val_accuracy", "max") for t in first.trials}
    assert sorted(values) == [0, 1, 2] and sorted(finished) == [0, 1, 2]
    assert all(t.status == "Completed" for t in first.trials)
    assert len({t.config["learning_rate"] for t in first.trials}) == 3
    assert [t.config["learning_rate"] for t in first.trials] == _seeded_draws(space, seed=3)  # reproducible by seed
    assert first.winner.best("val_accuracy", "max") == max(values.values())
    assert min(values.values()) < max(values.values())  # the choice mattered

    out = tmp_path / "chunk_0"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["search"]["winner"]["trial_id"] == first.winner.trial_id
    assert manifest["search"]["winner"]["config"]["learning_rate"] == first.winner.config["learning_rate"]
    assert _val_accuracy(out, 0, seed=3) == pytest.approx(max(values.values()), abs=1e-6)  # the winner's own state
    rows = _rows(out)
    assert [(r["update_id"], r["trial_id"]) for r in sorted(rows, key=lambda r: r["trial_id"])] == [
        ("0", "0"),
        ("0", "1"),
        ("0", "2"),
    ]
    assert hashlib.sha256((out / "hpo.csv").read_bytes()).hexdigest() == manifest["search"]["hpo_csv"]["sha256"]
    assert not any((tmp_path / "work" / "trials").iterdir())  # trial folders removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk_0", "work"]  # nothing else (Syne Tune's std.out)

    before = _digests(out)
    second = run_training_job(
        mode="max",
        config_space={
            "optimizer": "SGD",
            "learning_rate": first.winner.config["learning_rate"],
            "memory_size": 50,
            "batch_size": 16,
        },
        metric="val_accuracy",
        backend="local",
        updater="DER",
        max_epochs=1,
        chunk_id=1,
        config_file=CONFIG,
        input_state_url=str(out),
        output_state_url=str(tmp_path / "chunk_1"),
        working_directory=str(tmp_path / "work"),
    )
    assert _digests(out) == before  # the input is never modified
    assert len(second.trials) == 1
    later = load_state(tmp_path / "chunk_1")
    assert later.manifest["updates_done"] == 2
    assert [r["update_id"] for r in _rows(tmp_path / "chunk_1")] == ["0", "0", "0", "1"]
    assert _val_accuracy(tmp_path / "chunk_1", 1, seed=0) == pytest.approx(
        second.winner.best("val_accuracy", "max"), abs=1e-6
    )


def test_renates_example_runs_with_the_import_changed(tmp_path, monkeypatch):
    example = ROOT / "examples" / "renate_train_mlp_locally"
    for name in ("renate_config.py", "start_training_without_hpo.py"):
        shutil.copy(example / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAX_EPOCHS", "1")
    runpy.run_path(str(tmp_path / "start_training_without_hpo.py"), run_name="__main__")
    second = load_state(tmp_path / "state_dump_second_model")
    assert second.manifest["updates_done"] == 2
    assert [r["update_id"] for r in _rows(tmp_path / "state_dump_second_model")] == ["0", "1"]
    assert float(_rows(tmp_path / "state_dump_second_model")[1]["val_accuracy"]) > 0.5
