"""Memory governance at ``s3://`` (the local moto server): deleting samples from a state URL written
by an update and from a model home at S3 (a new version by compare-and-swap, the old one kept),
the removed ids absent from the new memory.pt's bytes, a refused deletion committing nothing, an
update from the home afterwards, a local or plain-URL state folder's deletion written to an output
URL, and ``retentive memory list --json`` / ``export`` at S3."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from s3_server import s3  # noqa: F401 - the fixture
from state_helpers import der, memory_bytes_hold

from retentive.cli import main
from retentive.errors import SampleNotFoundError, StateError
from retentive.governance import delete_samples, list_memory
from retentive.state import load_state
from retentive.state.home import ModelHome
from retentive.state.remote import fetch_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(s3, split_small, tmp_path_factory) -> tuple[str, Path]:
    """A state URL one DER update (96 MNIST rows, memory of 40) wrote, and a local copy of it."""
    train, _ = split_small
    url = f"s3://{s3.bucket}/trained"
    der(url, memory_size=40, max_epochs=1).update(train[0].subset(torch.arange(96)), task_id=0)
    return url, fetch_state(url, tmp_path_factory.mktemp("trained") / "s0")


def _home(s3, trained, name: str) -> ModelHome:
    """A fresh model home at S3 whose current version is the trained state."""
    home = ModelHome(f"s3://{s3.bucket}/{name}")
    home.promote(home.write_candidate(trained[1]), expect=None)
    return home


def _objects(s3, prefix: str) -> list[str]:
    return sorted(s3.filesystem().find(f"{s3.bucket}/{prefix}"))


def _assert_deleted(home: ModelHome, before, doomed: list[int], tmp_path: Path) -> None:
    """The new version is current, the old one in the history; the ids are gone from the new bytes only."""
    after = home.current()
    assert after is not None and after.id != before.id
    assert before.id in [v.id for v in home.history() if v.role == "previous"]
    new, old = home.fetch(tmp_path / "new", after.id), home.fetch(tmp_path / "old", before.id)
    assert not any(memory_bytes_hold(new, doomed)) and all(memory_bytes_hold(old, doomed))
    record = load_state(new).manifest["memory_deletions"][-1]
    assert record["removed_ids"] == sorted(doomed) and record["rows_removed"] == len(doomed)
    assert record["from_version"] == load_state(old).version


def test_delete_in_an_s3_home_is_a_new_version_and_a_miss_commits_nothing(s3, trained, tmp_path):
    home = _home(s3, trained, "home-api")
    before, rows = home.current(), list_memory(home.location)
    doomed = [rows[0]["sample_id"], rows[7]["sample_id"]]
    done = delete_samples(home.location, ids=doomed)
    assert done.version == home.current().id and done.rows_removed == 2
    _assert_deleted(home, before, doomed, tmp_path)
    assert [r["sample_id"] for r in list_memory(home.location)] == [
        r["sample_id"] for r in rows if r["sample_id"] not in doomed
    ]
    # an id the memory no longer holds: refused before anything is uploaded or committed
    current, objects = home.current(), _objects(s3, "home-api")
    with pytest.raises(SampleNotFoundError, match=str(doomed[0])):
        delete_samples(home.location, ids=[doomed[0], rows[1]["sample_id"]])
    with pytest.raises(ValueError, match="output is for single state folders"):
        delete_samples(home.location, ids=[rows[1]["sample_id"]], output=f"s3://{s3.bucket}/elsewhere")
    assert home.current() == current and _objects(s3, "home-api") == objects
    assert not _objects(s3, "elsewhere")


def test_cli_delete_in_a_subprocess_on_the_state_url_an_update_wrote(s3, trained, tmp_path):
    url, _ = trained
    home = ModelHome(url)
    before, rows = home.current(), list_memory(url)
    doomed = [rows[2]["sample_id"], rows[3]["sample_id"], rows[30]["sample_id"]]
    env = s3.env(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "retentive.cli", "memory", "delete", url, "--ids", ",".join(map(str, doomed))]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"deleted 3 stored samples (3 ids); the new state is version {home.current().id} of {url}" in done.stdout
    _assert_deleted(home, before, doomed, tmp_path)
    assert not list(tmp_path.glob("s3*")), "nothing written locally"
    refused = subprocess.run([*command[:-1], str(doomed[0])], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and str(doomed[0]) in refused.stderr
    assert refused.stderr.strip().count("\n") == 0, refused.stderr


def test_an_update_from_the_home_after_a_deletion_resumes_from_the_new_version(s3, trained, split_small):
    train, _ = split_small
    home = _home(s3, trained, "home-update")
    doomed = [r["sample_id"] for r in list_memory(home.location)[:4]]
    done = delete_samples(home.location, ids=doomed)
    deletion = home.current()
    assert deletion.id == done.version and len(list_memory(home.location)) == 36
    der(home.location, home.location, memory_size=40, max_epochs=1).update(train[1].subset(torch.arange(96)), task_id=1)
    updated = home.current()
    assert updated.id != deletion.id and deletion.id in [v.id for v in home.history()]
    manifest = home.manifest(updated)
    assert manifest["lineage"]["parent"] == deletion.manifest_sha256 and manifest["updates_done"] == 2
    kept = list_memory(home.location)
    assert len(kept) == 40 and not set(doomed) & {r["sample_id"] for r in kept}
    assert {r["stored_in_update"] for r in kept} == {0, 1}


def test_a_local_folder_deleted_into_an_output_url(s3, trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, local = trained
    rows = list_memory(str(local))
    doomed = [rows[4]["sample_id"]]
    output = f"s3://{s3.bucket}/clean"
    done = delete_samples(local, ids=doomed, output=output)
    assert not list(tmp_path.iterdir()), "the output URL is not a local folder"
    assert ModelHome(output).current().id == done.version and len(list_memory(output)) == 39
    assert not any(memory_bytes_hold(fetch_state(output, tmp_path / "clean"), doomed))
    objects = _objects(s3, "clean")
    with pytest.raises(StateError, match="already holds a state"):
        delete_samples(local, ids=[rows[5]["sample_id"]], output=output)
    assert _objects(s3, "clean") == objects


def test_a_plain_folder_at_a_url_is_listed_and_deleted_into_an_output_url(s3, trained, tmp_path, monkeypatch, capsys):
    """A state folder copied to S3 as is (no current.json) is read like the folder; it is never replaced in place."""
    monkeypatch.chdir(tmp_path)
    _, local = trained
    rows = list_memory(str(local))
    doomed = [rows[6]["sample_id"]]
    s3.filesystem().put(str(local), f"{s3.bucket}/plain", recursive=True)
    plain, objects = f"s3://{s3.bucket}/plain", _objects(s3, "plain/")
    assert list_memory(plain) == rows
    with pytest.raises(ValueError, match="cannot be replaced in place"):
        delete_samples(plain, ids=doomed)
    output = f"s3://{s3.bucket}/plain-clean"
    assert main(["memory", "delete", plain, "--ids", str(doomed[0]), "--output", output]) == 0
    assert f"the new state is version {ModelHome(output).current().id} of {output}" in capsys.readouterr().out
    assert [r["sample_id"] for r in list_memory(output)] == [
        r["sample_id"] for r in rows if r["sample_id"] not in doomed
    ]
    assert not any(memory_bytes_hold(fetch_state(output, tmp_path / "clean"), doomed))
    assert _objects(s3, "plain/") == objects and not [p for p in tmp_path.iterdir() if p.name != "clean"]
    assert main(["memory", "list", f"s3://{s3.bucket}/nothing-here"]) == 1  # neither a pointer nor a folder
    assert "holds no retentive state" in capsys.readouterr().err


def test_list_json_and_export_at_an_s3_home(s3, trained, tmp_path, capsys):
    home = _home(s3, trained, "home-read")
    assert main(["memory", "list", home.location, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["state"] == home.location and listed["samples"] == list_memory(str(trained[1]))
    assert main(["memory", "export", home.location, str(tmp_path / "out")]) == 0
    capsys.readouterr()
    index = list(csv.DictReader((tmp_path / "out" / "index.csv").read_text().splitlines()))
    arrays = np.load(tmp_path / "out" / "samples.npz")
    assert [int(r["sample_id"]) for r in index] == arrays["sample_ids"].tolist()
    assert [int(r["sample_id"]) for r in index] == [r["sample_id"] for r in listed["samples"]]
    about = json.loads((tmp_path / "out" / "index.json").read_text())["state"]
    assert about == {
        "location": home.location,
        "version": home.current().id,
        "state_version": load_state(trained[1]).version,
    }
    assert (tmp_path / "out" / index[0]["image"]).is_file()


def test_a_deletion_into_an_output_url_with_refit_publishes_the_deletion_then_the_refit(
    s3, trained, tmp_path, monkeypatch, capsys
):
    """``delete --output s3://... --refit``: two versions at the URL, the refit's parent the deletion."""
    monkeypatch.chdir(tmp_path)
    _, local = trained
    rows = list_memory(str(local))
    doomed = [rows[8]["sample_id"], rows[9]["sample_id"]]
    output = f"s3://{s3.bucket}/refit-out"
    config = [
        "--config", str(ROOT / "configs" / "der.yaml"), "--threads", "1", "--set", "logger=false",
        "--set", "updater.init_args.memory_size=40",
    ]  # fmt: skip
    ids = ",".join(map(str, doomed))
    assert main(["memory", "delete", str(local), "--ids", ids, "--output", output, "--refit", "2", *config]) == 0
    out = capsys.readouterr().out
    assert "deleted 2 stored samples" in out and "refit for 2 epochs on the 38 samples the memory holds" in out
    assert not list(tmp_path.iterdir()), "neither the deletion nor the refit wrote a local folder"
    home = ModelHome(output)
    refit, deletion = home.history()[:2]
    assert [v.role for v in home.history()] == ["current", "previous"]
    refit_state = load_state(home.fetch(tmp_path / "refit", refit.id))
    deleted_state = load_state(home.fetch(tmp_path / "deleted", deletion.id))
    assert refit_state.manifest["lineage"]["parent"] == deletion.manifest_sha256
    assert refit_state.manifest["lineage"]["refit"]["epochs"] == 2
    assert refit_state.manifest["memory_deletions"][-1]["removed_ids"] == sorted(doomed)
    assert torch.equal(refit_state.memory["storage"]["sample_ids"], deleted_state.memory["storage"]["sample_ids"])
    assert any(not torch.equal(refit_state.model[k], deleted_state.model[k]) for k in refit_state.model)
    assert not any(memory_bytes_hold(tmp_path / "refit", doomed))
