"""``retentive memory refit`` and ``retentive memory delete --refit`` on a model home, on real MNIST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from retentive.cli import main
from retentive.data.files import write_chunk
from retentive.state import load_state
from retentive.state.home import ModelHome

ROOT = Path(__file__).resolve().parents[2]
CONFIG = [
    "--config", str(ROOT / "configs" / "er.yaml"), "--threads", "1", "--set", "logger=false",
    "--set", "updater.init_args.memory_size=60",
]  # fmt: skip


@pytest.fixture
def home(tmp_path, split_small) -> ModelHome:
    """A model home after one ER update of 120 samples (memory 60)."""
    train, _ = split_small
    write_chunk(tmp_path / "chunk.npz", train[0].subset(torch.arange(120)))
    home = ModelHome(tmp_path / "home").create()
    assert main(["update", *CONFIG, "--data", str(tmp_path / "chunk.npz"), "--output-state", str(home.location)]) == 0
    return home


def stored_ids(home: ModelHome, capsys) -> list[int]:
    capsys.readouterr()
    assert main(["memory", "list", str(home.location), "--json"]) == 0
    return [row["sample_id"] for row in json.loads(capsys.readouterr().out)["samples"]]


def test_delete_with_refit_writes_the_deletion_then_the_refit(home, tmp_path, capsys):
    ids = stored_ids(home, capsys)
    gone = [str(i) for i in ids[:5]]
    summary = tmp_path / "refit.json"
    assert (
        main(
            ["memory", "delete", str(home.location), "--ids", *gone, "--refit", "2", *CONFIG, "--summary", str(summary)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "deleted 5 stored samples" in out and "refit for 2 epochs on the 55 samples" in out
    current, deletion = home.history()[:2]
    refit = load_state(home.fetch(tmp_path / "refit", current.id))
    deleted = load_state(home.fetch(tmp_path / "deleted", deletion.id))
    assert refit.manifest["lineage"]["refit"] == {"epochs": 2, "samples": 55, "batch_size": 64}
    assert refit.manifest["lineage"]["parent"] == deletion.manifest_sha256
    assert refit.manifest["memory_deletions"] == deleted.manifest["memory_deletions"]  # the record is carried
    assert sorted(refit.manifest["memory_deletions"][0]["removed_ids"]) == sorted(int(i) for i in gone)
    assert torch.equal(refit.memory["storage"]["sample_ids"], deleted.memory["storage"]["sample_ids"])
    assert any(not torch.equal(refit.model[k], deleted.model[k]) for k in refit.model)
    assert json.loads(summary.read_text())["samples"] == 55
    assert stored_ids(home, capsys) == ids[5:]
    assert main(["memory", "refit", str(home.location), "--epochs", "1", *CONFIG]) == 0
    assert load_state(home.fetch(tmp_path / "again")).manifest["lineage"]["refit"]["epochs"] == 1


def test_a_refit_without_its_config_is_refused_before_anything_is_deleted(home, capsys):
    ids, before = stored_ids(home, capsys), home.current()
    assert main(["memory", "delete", str(home.location), "--ids", str(ids[0]), "--refit", "2"]) == 1
    assert "--refit re-trains the model, so it needs --config" in capsys.readouterr().err
    assert home.current().id == before.id
    with pytest.raises(SystemExit) as usage:
        main(["memory", "refit", str(home.location), "--epochs", "0", *CONFIG])
    assert usage.value.code == 2
