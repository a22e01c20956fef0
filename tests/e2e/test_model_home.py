"""The model home: versions plus a pointer committed last, on a local folder and at s3:// alike;
promote, challenger, rollback and history; lineage in every manifest, crafted manifests reported."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from s3_server import s3  # noqa: F401 - the fixture
from state_helpers import der

from retentive.cli import main
from retentive.errors import StateConflictError, StateError
from retentive.state import load_state
from retentive.state.ancestry import chain_complete, home_history, lineage_chain
from retentive.state.home import ModelHome, is_home
from retentive.state.lineage import DATA_FINGERPRINT, read_lineage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def states(tmp_path_factory, split_small) -> list[Path]:
    """Three finished single state folders, each built on the one before (lineage recorded)."""
    train, _ = split_small
    root = tmp_path_factory.mktemp("states")
    folders, previous = [], None
    for index in range(3):
        folder = root / f"chunk_{index}"
        der(folder, previous, max_epochs=1).update(train[index].subset(torch.arange(48)), task_id=index)
        folders.append(folder)
        previous = folder
    return folders


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=["local", "s3"])
def home(request, tmp_path) -> ModelHome:
    if request.param == "local":
        return ModelHome(tmp_path / "home").create()
    server = request.getfixturevalue("s3")
    monkeypatch = request.getfixturevalue("monkeypatch")
    for name, value in server.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return ModelHome(f"s3://{server.bucket}/home-{tmp_path.name}")


def test_candidates_promote_challenger_rollback_and_history(home, states, tmp_path, capsys):
    assert home.current() is None and home.history() == []
    first = home.write_candidate(states[0])
    assert first.role == "candidate" and home.current() is None  # written, not served
    assert home.promote(first, expect=None).id == first.id
    second = home.promote(home.write_candidate(states[1]))
    third = home.write_candidate(states[2])
    with pytest.raises(StateConflictError, match=f"version {first.id} was expected to be current"):
        home.promote(third, expect=first.id)  # the caller read an older current version
    kept = home.mark_challenger(third, {"passed": False, "drop": 12.5}, expect=second.id)
    assert kept.report == {"passed": False, "drop": 12.5} and home.current().id == second.id
    assert [(v.role, v.id) for v in home.history()] == [
        ("current", second.id),
        ("previous", first.id),
        ("challenger", third.id),
    ]
    # the CLI on the same home: history, rollback, promote the challenger, history again
    assert main(["inspect", home.location, "--history"]) == 0
    out = capsys.readouterr().out
    assert "challenger" in out and '"drop": 12.5' in out and second.id in out
    assert main(["rollback", home.location]) == 0
    assert f"to version {first.id}" in capsys.readouterr().out
    assert [v.role for v in home.history()] == ["current", "challenger", "rejected"]
    assert main(["promote", home.location, "--challenger", "--expect", second.id]) == 75  # stale: nothing committed
    assert home.current().id == first.id
    assert main(["promote", home.location, "--challenger"]) == 0
    assert f"promoted {home.location} to version {third.id} (was version {first.id})" in capsys.readouterr().out
    assert home.challenger() is None and home.current().id == third.id
    assert main(["promote", home.location, "20990101T000000Z-000000000000"]) == 1
    assert "records no version" in capsys.readouterr().err
    # every version is immutable and verified: a fetched copy matches the folder it came from bit for bit
    copy = home.fetch(tmp_path / "copy", second.id)
    assert {p.name: _sha(p) for p in copy.iterdir()} == {p.name: _sha(p) for p in states[1].iterdir()}


def test_an_update_reads_and_writes_a_home_and_inspect_prints_its_lineage(home, split_small, capsys):
    train, _ = split_small
    chunks = [train[i].subset(torch.arange(40)) for i in range(4)]
    der(home.location, max_epochs=1).update(chunks[0], task_id=0)  # the first update: no input
    for index in (1, 2, 3):
        der(home.location, home.location, max_epochs=1).update(chunks[index], task_id=index)
    manifest = home.manifest()
    lineage = read_lineage(manifest)
    assert lineage.problems == [] and lineage.update == 3 and lineage.task_id == 3 and lineage.seed == 0
    assert lineage.parent == home.history()[1].manifest_sha256  # the previous version, by its manifest digest
    assert lineage.data["samples"] == 40 and lineage.data["method"] == DATA_FINGERPRINT
    assert lineage.config["memory_size"] == 50 and lineage.updater == "DarkExperienceReplayModelUpdater"
    assert {"python", "torch", "retentive", "pytorch_lightning", "numpy"} <= set(lineage.packages)
    assert lineage.gate is None and [a["update"] for a in lineage.ancestors] == [0, 1, 2]
    chain = lineage_chain(home.location)
    assert [link.lineage["update"] for link in chain] == [3, 2, 1, 0] and chain_complete(chain)
    assert main(["inspect", home.location, "--lineage"]) == 0
    out = capsys.readouterr().out
    assert out.count("parent    ") == 4 and "none: the first update" in out
    assert main(["inspect", home.location]) == 0  # the current version, verified
    assert "verification    OK" in capsys.readouterr().out


def test_lineage_through_a_pipelines_folders_and_from_carried_ancestors(states, tmp_path, capsys):
    chain = lineage_chain(states[2])
    assert [Path(link.where).name for link in chain] == ["chunk_2", "chunk_1", "chunk_0"] and chain_complete(chain)
    # the earlier folders are gone: the chain is filled from the ancestors the newest manifest carries
    alone = tmp_path / "alone" / "chunk_2"
    shutil.copytree(states[2], alone)
    chain = lineage_chain(alone)
    assert chain[1].problem == "not found here (removed, or kept elsewhere)"
    assert [link.lineage["summary"]["update"] for link in chain[2:]] == [0] and chain_complete(chain[:1] + chain[2:])
    assert main(["inspect", str(alone), "--lineage"]) == 1  # incomplete: one link is only known by summary
    assert "known from its descendant's ancestors" in capsys.readouterr().out


def _craft(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "lineage",
    [
        "not an object",
        {"parent": "../../etc/passwd", "seed": "zero", "data": [1], "packages": {"torch": 2}, "gate": "passed"},
        {"parent": "a" * 64, "ancestors": "everything", "config": None, "update": -1, "task_id": {"x": 1}},
        {"parent": None, "ancestors": [{"digest": 5}, "x"], "gate": {"passed": "maybe"}},
    ],
)
def test_crafted_lineage_fields_are_reported_not_crashed_on(states, tmp_path, lineage, capsys):
    folder = tmp_path / "crafted"
    shutil.copytree(states[1], folder)
    _craft(folder, lambda m: m.__setitem__("lineage", lineage))
    chain = lineage_chain(folder)
    assert not chain_complete(chain)
    assert main(["inspect", str(folder), "--lineage"]) == 1
    assert main(["inspect", str(folder), "--lineage", "--json"]) == 1
    assert main(["inspect", str(folder), "--history"]) == 0  # the manifest itself is valid
    out = capsys.readouterr().out
    assert "MALFORMED" in out or "not found here" in out or "no lineage" in out


def test_a_lineage_cycle_and_a_broken_manifest_stop_the_chain(states, tmp_path, capsys):
    a, b = tmp_path / "p" / "a", tmp_path / "p" / "b"
    shutil.copytree(states[0], a)
    shutil.copytree(states[1], b)
    _craft(b, lambda m: m["lineage"].__setitem__("parent", _sha(a / "manifest.json")))
    _craft(a, lambda m: m["lineage"].__setitem__("parent", _sha(b / "manifest.json")))  # a's digest changed
    chain = lineage_chain(b)
    assert chain[-1].problem is not None and not chain_complete(chain)
    (a / "manifest.json").write_text('{"format": "retentive-state", "format_version": 99}')
    assert main(["inspect", str(b), "--lineage"]) == 1
    capsys.readouterr()


def test_crafted_pointers_are_refused_before_anything_is_read(tmp_path, states, capsys):
    home = ModelHome(tmp_path / "home").create()
    home.promote(home.write_candidate(states[0]), expect=None)
    pointer = json.loads((tmp_path / "home" / "current.json").read_text())
    for crafted in (
        {**pointer, "challenger": {"version": "../../x", "manifest_sha256": "0" * 64}},
        {**pointer, "rejected": [{"version": pointer["version"], "manifest_sha256": "z"}]},
        {**pointer, "challenger": {**pointer, "report": ["not", "an", "object"]}},
        {**pointer, "rejected": "all of them"},
    ):
        (tmp_path / "home" / "current.json").write_text(json.dumps(crafted))
        with pytest.raises(StateError, match="current.json"):
            home.history()
        assert main(["inspect", home.location, "--history"]) == 1
        assert main(["promote", home.location, "--challenger"]) == 1
        assert "current.json" in capsys.readouterr().err


def test_bad_requests_are_refused_with_nothing_committed(tmp_path, states):
    home = ModelHome(tmp_path / "home").create()
    candidate = home.write_candidate(states[0])
    with pytest.raises(StateError, match="no current version yet"):
        home.mark_challenger(candidate, {"passed": False})
    with pytest.raises(StateError, match="report"):
        home.mark_challenger(candidate, {"bad": float("nan")})
    current = home.promote(candidate)
    with pytest.raises(StateError, match="is the current version"):
        home.mark_challenger(current, {"passed": False})
    with pytest.raises(StateError, match="not a retentive version id"):
        home.promote("../../etc")
    with pytest.raises(StateError, match="no previous version"):
        home.rollback()
    with pytest.raises(StateError, match="single state folder"):
        ModelHome(states[0]).create()
    assert not is_home(states[0]) and is_home(home.location)
    assert main(["promote", str(states[0]), "x"]) == 1
    # a modified version is refused before it is promoted
    second = home.write_candidate(states[1])
    (Path(home.location) / "versions" / second.id / "model.pt").write_bytes(b"tampered")
    home.mark_challenger(second, {"passed": False})
    with pytest.raises(StateError, match="model.pt"):
        home.promote(second.id)
    assert home.current().id == current.id and load_state(home.fetch(tmp_path / "f")).manifest["updates_done"] == 1


def test_single_folders_keep_their_layout_and_history_shows_the_rollback_copy(states, tmp_path, split_small, capsys):
    folder = tmp_path / "inplace"
    shutil.copytree(states[0], folder)
    der(folder, folder, max_epochs=1).update(split_small[0][1].subset(torch.arange(32)), task_id=1)
    assert not (folder / "current.json").exists() and not is_home(folder)
    links = home_history(folder)
    assert [link.role for link in links] == ["current", "previous"]
    assert read_lineage(load_state(folder).manifest).parent == _sha(states[0] / "manifest.json")
    assert main(["inspect", str(folder), "--history"]) == 0
    assert main(["rollback", str(folder)]) == 0
    capsys.readouterr()


def test_an_updaters_output_can_be_kept_as_the_challenger_instead_of_promoted(tmp_path, states):
    from retentive.state.remote.locations import StateLocations

    home = ModelHome(tmp_path / "home").create()
    served = home.promote(home.write_candidate(states[0]), expect=None)
    locations = StateLocations(home.location, home.location)
    assert locations.home.location == home.location and locations.expected_version == served.id
    shutil.copytree(states[1], locations.output_folder)
    locations.publish(challenger_report={"passed": False, "new_chunk_accuracy": 0.31})
    assert home.current().id == served.id and not locations.output_folder.exists()
    assert home.challenger().report == {"passed": False, "new_chunk_accuracy": 0.31}
    assert home.manifest(home.challenger())["updates_done"] == 2
    locations.close()


def test_the_update_command_runs_a_pipeline_through_a_local_home(tmp_path, split_small, capsys):
    from retentive.data.files import write_chunk

    train, _ = split_small
    for index in (0, 1):
        write_chunk(tmp_path / f"train_{index}.npz", train[index].subset(torch.arange(40)))
    home = ModelHome(tmp_path / "home").create()
    config = str(Path(__file__).resolve().parents[2] / "configs" / "er.yaml")
    common = ["update", "--config", config, "--set", "trainer.max_epochs=1", "--threads", "1"]
    assert main([*common, "--data", str(tmp_path / "train_0.npz"), "--output-state", home.location]) == 0
    first = home.current()
    states = ["--input-state", home.location, "--output-state", home.location]
    assert main([*common, "--data", str(tmp_path / "train_1.npz"), *states]) == 0
    assert [v.role for v in home.history()] == ["current", "previous"] and home.history()[1].id == first.id
    assert read_lineage(home.manifest()).parent == first.manifest_sha256
    capsys.readouterr()
    assert main(["inspect", home.location, "--lineage"]) == 0
    assert capsys.readouterr().out.count("parent    ") == 2
    assert main(["rollback", home.location]) == 0 and home.current().id == first.id


def test_concurrent_promotes_on_a_local_home_commit_exactly_one(tmp_path, states):
    """Four threads promote four candidates over the same current version: the lock and the
    compare under it let exactly one commit; the others get StateConflictError, nothing written."""
    import threading

    home = ModelHome(tmp_path / "home").create()
    served = home.promote(home.write_candidate(states[0]), expect=None)
    candidates = [home.write_candidate(states[1 + i % 2]) for i in range(4)]
    barrier, results = threading.Barrier(4), []

    def promote(candidate):
        barrier.wait()
        try:
            results.append(("committed", ModelHome(home.location).promote(candidate, expect=served.id).id))
        except StateConflictError:
            results.append(("conflict", candidate.id))

    threads = [threading.Thread(target=promote, args=(c,)) for c in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    committed = [version for outcome, version in results if outcome == "committed"]
    assert len(committed) == 1 and len(results) == 4, results
    assert home.current().id == committed[0] and home.history()[1].id == served.id
    assert not list(Path(home.location).glob(".current.json.*"))  # no temporary pointer left
