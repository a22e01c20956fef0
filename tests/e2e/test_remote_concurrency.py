"""State at URLs under concurrent writers and crafted pointers: compare-and-swap publish, rollback
at URLs, names read from pointers validated, readers never see a mix."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import torch
from s3_server import s3  # noqa: F401 - the fixture
from state_helpers import der

from retentive.cli import main
from retentive.errors import StateConflictError, StateError
from retentive.models import MLP
from retentive.state import load_state
from retentive.state.loading import load_model
from retentive.state.remote import fetch_state, publish_state, rollback_url
from retentive.state.remote.locations import StateLocations

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "support" / "publish_worker.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, split_small) -> tuple[Path, Path]:
    """Two finished local state folders (one update, then a second one) to publish."""
    train, _ = split_small
    root = tmp_path_factory.mktemp("trained")
    der(root / "a", max_epochs=1).update(train[0].subset(torch.arange(64)))
    der(root / "b", root / "a", max_epochs=1).update(train[1].subset(torch.arange(64)))
    return root / "a", root / "b"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in folder.iterdir()}


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _pointer(s3, key: str) -> dict:
    return json.loads(s3.filesystem().cat_file(f"{s3.bucket}/{key}/current.json"))


def _versions(s3, key: str) -> set[str]:
    fs = s3.filesystem()
    return {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(f"{s3.bucket}/{key}/versions")}


def _worker(s3, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        env=s3.env(PYTHONPATH=str(ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


# ---------------------------------------------------------------- finding 1: concurrent publishers
def test_concurrent_publishers_to_one_s3_url_lose_no_commit(s3, trained, tmp_path):
    """Three processes publish 8 rounds each to one URL while a fourth reads it: every reported
    commit is in the URL's linear history (one commit per parent), every other publish reported a
    conflict, the URL always loads, and no committed version is missing."""
    key, writers, rounds = "race", 3, 8
    url = f"s3://{s3.bucket}/{key}"
    first = publish_state(trained[0], url)
    procs = [_worker(s3, "race", url, rounds, *trained) for _ in range(writers)]
    reader = _worker(s3, "read", url, tmp_path)
    try:
        for proc in (*procs, reader):
            assert proc.stdout.readline().strip() == "ready"
        for proc in (reader, *procs):
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            lines = [line.strip() for line in proc.stdout]
            assert lines[-1] == "done", lines
            results += [json.loads(line) for line in lines[:-1]]
            assert proc.wait(timeout=120) == 0
        reader.stdin.close()
        read = json.loads(reader.stdout.readline())
        assert reader.wait(timeout=60) == 0
    finally:
        for proc in (*procs, reader):
            proc.kill()
            proc.wait()
    print(
        f"{writers} writers x {rounds} rounds: {sum('ok' in r for r in results)} commits, "
        f"{sum('conflict' in r for r in results)} conflicts; {read['reads']} verified reads"
    )
    assert read["reads"] > 0 and read["errors"] == [], read["errors"][:3]
    assert [r for r in results if "error" in r] == []
    commits = [r for r in results if "ok" in r]
    conflicts = [r for r in results if "conflict" in r]
    assert len(commits) + len(conflicts) == writers * rounds
    assert conflicts, "the writers overlapped: some publishes found the pointer moved"
    assert all("nothing was committed and the upload" in r["conflict"] for r in conflicts)
    # the commits form one chain from the first version to the committed one: none lost or overwritten
    child = {}
    for commit in commits:
        assert commit["parent"] not in child, f"two commits replaced {commit['parent']}"
        child[commit["parent"]] = commit["ok"]
    chain, version = [], first.version
    while version in child:
        version = child[version]
        chain.append(version)
    assert sorted(chain) == sorted(c["ok"] for c in commits)
    pointer = _pointer(s3, key)
    assert pointer["version"] == chain[-1] and pointer["previous"][0]["version"] == (
        chain[-2] if len(chain) > 1 else first.version
    )
    # every committed version is still there (none is older than the grace period); conflicts' uploads are gone
    assert _versions(s3, key) == {first.version, *chain}
    fetched = fetch_state(url, tmp_path / "final")
    assert _files(fetched) in ({n: _sha(trained[i] / n) for n in _files(fetched)} for i in (0, 1))


def test_first_publishers_to_a_fresh_url_one_wins(s3, trained, tmp_path):
    url = f"s3://{s3.bucket}/fresh-race"
    won = publish_state(trained[0], url, expect=None)
    with pytest.raises(
        StateConflictError,
        match=rf"expected no committed state, but version {won.version} is "
        r"committed now; nothing was committed and the upload versions/\S+ was removed",
    ):
        publish_state(trained[1], url, expect=None)
    assert _versions(s3, "fresh-race") == {won.version}
    assert _files(fetch_state(url, tmp_path / "a")) == _files(trained[0])


def test_in_place_updates_at_a_url_commit_only_over_what_they_read(s3, trained, split_small, tmp_path):
    """Two updaters built on one URL: the second finds it moved (before training); a publish whose
    pointer moved during the update is refused and its state discarded; the URL is untouched."""
    url = f"s3://{s3.bucket}/in-place"
    publish_state(trained[0], url)
    first, second = der(url, url, max_epochs=1), der(url, url, max_epochs=1)
    first.update(split_small[0][1].subset(torch.arange(32)))
    committed = _pointer(s3, "in-place")
    with pytest.raises(StateConflictError, match="changed since this updater read it"):
        second.update(split_small[0][1].subset(torch.arange(32)))
    assert _pointer(s3, "in-place") == committed and second.updates_done == 1
    first.update(split_small[0][2].subset(torch.arange(32)))  # an updater chains its own commits
    assert load_state(fetch_state(url, tmp_path / "after")).manifest["updates_done"] == 3
    # the pointer moves between the update's start and its publish
    locations = StateLocations(url, url)
    import shutil

    shutil.copytree(trained[1], locations.output_folder)
    moved = publish_state(trained[0], url)
    with pytest.raises(StateConflictError, match="the updated state was discarded"):
        locations.publish()
    assert _pointer(s3, "in-place")["version"] == moved.version and not locations.output_folder.exists()
    locations.close()


# ---------------------------------------------------------------- rollback at URLs
def test_rollback_at_a_url_restores_the_previous_version_bit_for_bit(s3, trained, tmp_path, capsys):
    url = f"s3://{s3.bucket}/rollback"
    first = publish_state(trained[0], url)
    second = publish_state(trained[1], url)
    assert second.previous[0]["version"] == first.version
    assert main(["rollback", url]) == 0
    assert f"rolled back {url} to version {first.version}" in capsys.readouterr().out
    assert _files(fetch_state(url, tmp_path / "a")) == _files(trained[0])
    torch.testing.assert_close(load_model(MLP(), url).state_dict(), load_state(trained[0]).model, rtol=0, atol=0)
    with pytest.raises(
        StateError, match=rf"has no previous version to roll back to: version {first.version} is committed"
    ):
        rollback_url(url)
    assert main(["rollback", url]) == 1
    assert "no previous version" in capsys.readouterr().err
    # a publish after a rollback builds on the restored version
    third = publish_state(trained[1], url)
    assert third.previous[0]["version"] == first.version
    with pytest.raises(StateError, match="nothing to roll back"):
        rollback_url(f"s3://{s3.bucket}/no-such-state")


def test_rollback_refuses_a_corrupt_previous_version(s3, trained):
    url = f"s3://{s3.bucket}/rollback-corrupt"
    first = publish_state(trained[0], url)
    publish_state(trained[1], url)
    fs = s3.filesystem()
    fs.pipe_file(f"{s3.bucket}/rollback-corrupt/versions/{first.version}/model.pt", b"not a model")
    before = _pointer(s3, "rollback-corrupt")
    with pytest.raises(
        StateError, match=rf"cannot roll .* back to version {first.version}: .*model.pt.*; nothing was changed"
    ):
        rollback_url(url)
    assert _pointer(s3, "rollback-corrupt") == before


def test_a_stale_expectation_is_refused_where_the_store_has_no_conditional_write(trained):
    """memory:// has no conditional write: the pointer is compared just before it is written."""
    import fsspec

    url = "memory://retentive-test/stale"
    read = publish_state(trained[0], url)
    moved = publish_state(trained[1], url)
    with pytest.raises(
        StateConflictError, match=rf"expected version {read.version}, but version {moved.version} is committed"
    ):
        publish_state(trained[0], url, expect=read)
    with pytest.raises(StateConflictError, match="expected no committed state"):
        publish_state(trained[0], url, expect=None)
    assert (
        json.loads(fsspec.filesystem("memory").cat_file("/retentive-test/stale/current.json"))["version"]
        == moved.version
    )


def test_a_rollback_racing_a_publish_changes_nothing(trained, monkeypatch):
    from retentive.state.remote import rollback as rollback_module

    url = "memory://retentive-test/rollback-race"
    publish_state(trained[0], url)
    read = publish_state(trained[1], url)
    real_download, moved = rollback_module.download, []

    def download_then_publish(*args, **kwargs):  # another writer commits while the rollback verifies
        result = real_download(*args, **kwargs)
        moved.append(publish_state(trained[0], url))
        return result

    monkeypatch.setattr(rollback_module, "download", download_then_publish)
    with pytest.raises(StateConflictError, match="nothing was rolled back") as refused:
        rollback_url(url)
    assert f"version {read.version} was read, but version {moved[0].version} is committed now" in str(refused.value)
    import fsspec

    assert (
        json.loads(fsspec.filesystem("memory").cat_file("/retentive-test/rollback-race/current.json"))["version"]
        == moved[0].version
    )


# ---------------------------------------------------------------- garbage collection
def test_garbage_collection_keeps_committed_previous_and_young_versions(trained):
    import fsspec

    fs = fsspec.filesystem("memory")
    url, root = "memory://retentive-test/gc", "/retentive-test/gc"
    publish_state(trained[0], url)
    old = (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y%m%dT%H%M%SZ")
    young = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"{old}-aaaaaaaaaaaa", f"{young}-bbbbbbbbbbbb", "not-a-version"):
        fs.pipe_file(f"{root}/versions/{name}/model.pt", b"debris")
    second = publish_state(trained[1], url)
    third = publish_state(trained[0], url, keep_previous=2)
    left = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/versions", detail=False)}
    # the old uncommitted one goes; the committed, its two previous, an upload in flight and foreign names stay
    assert left == {
        third.version,
        second.version,
        second.previous[0]["version"],
        f"{young}-bbbbbbbbbbbb",
        "not-a-version",
    }
    with pytest.raises(ValueError, match="keep_previous must be an int >= 1"):
        publish_state(trained[0], url, keep_previous=0)


# ---------------------------------------------------------------- finding 4: names from pointers
BAD_EXTRA = ["../../x", "ABS", "a/b", ".", "..", "", "a\x00b", "a\nb", "model.pt", "current.json", ".hidden"]


@pytest.mark.parametrize("bad", BAD_EXTRA)
def test_crafted_extra_names_are_refused_and_nothing_is_written(s3, trained, tmp_path, bad):
    """A pointer naming extra files outside the download folder (finding 4): refused, nothing written."""
    prefix = f"crafted-{BAD_EXTRA.index(bad)}"
    url, key = f"s3://{s3.bucket}/{prefix}", f"{s3.bucket}/{prefix}"
    fs = s3.filesystem()
    publish_state(trained[0], url)
    down = tmp_path / "one" / "two" / "download"
    down.mkdir(parents=True)
    name = str(tmp_path / "abs-target") if bad == "ABS" else bad
    pointer, data = _pointer(s3, prefix), b"attacker's bytes"
    if name.isprintable():  # the object is there too, so that following the name would write it
        fs.pipe_file(f"{key}/versions/{pointer['version']}/{name}", data)
    pointer["extra"] = {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}
    fs.pipe_file(f"{key}/current.json", json.dumps(pointer).encode())
    before = _tree(tmp_path)
    with pytest.raises(StateError, match="names the extra file") as refused:
        fetch_state(url, down / "state")
    assert repr(name) in str(refused.value)
    with pytest.raises(StateError, match="not a plain file name"):
        load_model(MLP(), url)
    assert _tree(tmp_path) == before, "nothing was written anywhere"
    assert not (tmp_path / "abs-target").exists()


@pytest.mark.parametrize(
    "field, value",
    [
        ("version", "../../x"),
        ("version", "/abs"),
        ("version", ".."),
        ("version", ""),
        ("version", "20240101T000000Z-aaaaaaaaaaaa/.."),
        ("previous", [{"version": "../x", "manifest_sha256": "0" * 64}]),
        ("manifest_sha256", "../x"),
        ("extra", {"ok.csv": {"sha256": "x", "bytes": 1}}),
    ],
)
def test_crafted_pointers_are_refused_in_memory(trained, tmp_path, field, value):
    import fsspec

    fs = fsspec.filesystem("memory")
    url = "memory://retentive-test/crafted-pointer"
    publish_state(trained[0], url)
    pointer = json.loads(fs.cat_file("/retentive-test/crafted-pointer/current.json"))
    pointer[field] = value
    fs.pipe_file("/retentive-test/crafted-pointer/current.json", json.dumps(pointer).encode())
    before = _tree(tmp_path)
    with pytest.raises(StateError, match=r"crafted-pointer/current.json.*(version|manifest_sha256|checksum entry)"):
        fetch_state(url, tmp_path / "state")
    with pytest.raises(StateError):
        rollback_url(url)
    assert _tree(tmp_path) == before
    fs.rm("/retentive-test/crafted-pointer", recursive=True)


def test_publish_refuses_an_extra_file_name_it_could_not_read_back(trained, tmp_path):
    import shutil

    folder = tmp_path / "state"
    shutil.copytree(trained[0], folder)
    (folder / "odd name.csv").write_text("x")
    with pytest.raises(StateError, match="'odd name.csv', which is not a plain file name"):
        publish_state(folder, "memory://retentive-test/odd")


# ---------------------------------------------------------------- readers
def test_a_reader_follows_the_new_pointer_when_its_version_vanishes(trained, tmp_path, monkeypatch):
    """A version removed under a reader (as a rollback and a later clean-up may) makes it fetch the
    newly committed version whole, never a mix."""
    from fsspec.implementations.memory import MemoryFileSystem

    url, root = "memory://retentive-test/reader", "/retentive-test/reader"
    first = publish_state(trained[0], url)
    real_get, calls = MemoryFileSystem.get_file, []

    def racing_get(self, rpath, lpath, **kwargs):
        calls.append(rpath)
        if len(calls) == 2:  # after the manifest: another writer commits, the version being read goes
            publish_state(trained[1], url)
            self.rm(f"{root}/versions/{first.version}", recursive=True)
        return real_get(self, rpath, lpath, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "get_file", racing_get)
    fetched = fetch_state(url, tmp_path / "state")
    assert _files(fetched) == _files(trained[1])


# ---------------------------------------------------------------- interrupts


def test_a_ctrl_c_during_the_pointer_commit_is_held_and_says_whether_it_committed(trained, monkeypatch):
    """SIGINT arriving while the pointer is written never splits the commit; the interrupt raised
    after it carries ``committed`` (True: the new pointer is there; False: nothing was committed)."""
    import os
    import signal

    import fsspec

    from retentive.state.interrupts import UpdateInterrupted
    from retentive.state.remote import layout

    url, key = "memory://retentive-test/sigint", "/retentive-test/sigint/current.json"
    first = publish_state(trained[0], url)
    real_commit = layout.commit_pointer

    def interrupted_commit(*args, **kwargs):  # Ctrl-C lands inside the commit
        os.kill(os.getpid(), signal.SIGINT)
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(layout, "commit_pointer", interrupted_commit)
    with pytest.raises(UpdateInterrupted, match="committed to 'memory://retentive-test/sigint'") as done:
        publish_state(trained[1], url)
    assert done.value.committed is True
    now = json.loads(fsspec.filesystem("memory").cat_file(key))
    assert now["version"] != first.version and now["previous"][0]["version"] == first.version
    with pytest.raises(UpdateInterrupted, match="nothing was committed") as refused:
        publish_state(trained[0], url, expect=first)  # stale: refused, and the interrupt says so
    assert refused.value.committed is False
    assert json.loads(fsspec.filesystem("memory").cat_file(key))["version"] == now["version"]


def test_an_update_interrupted_during_its_publish_says_it_committed(trained, split_small, monkeypatch):
    """In place at a URL: a Ctrl-C during the pointer's commit reaches the caller as UpdateInterrupted
    with committed=True, the URL holds the new state, and the updater builds on it next time."""
    import os
    import signal

    from retentive.state.interrupts import UpdateInterrupted
    from retentive.state.remote import layout

    url = "memory://retentive-test/update-sigint"
    publish_state(trained[0], url)
    updater = der(url, url, max_epochs=1)
    real_commit = layout.commit_pointer

    def interrupted_commit(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(layout, "commit_pointer", interrupted_commit)
    chunk = split_small[0][1].subset(torch.arange(32))
    with pytest.raises(UpdateInterrupted, match="committed to 'memory://retentive-test/update-sigint'") as done:
        updater.update(chunk, task_id=1)
    assert done.value.committed is True and updater.updates_done == 2
    monkeypatch.setattr(layout, "commit_pointer", real_commit)
    updater.update(chunk, task_id=2)  # builds on its own interrupted-but-committed version
    assert load_state(fetch_state(url, Path(updater.state_locations._workdir) / "check")).manifest["updates_done"] == 3
