"""State folders at URLs: s3:// through a local moto server, memory://, file://; crash-safe publish."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from s3_server import s3  # noqa: F401 - the fixture
from state_helpers import der

from retentive.cli import main
from retentive.cli.config import build_updater, load_config
from retentive.data.files import write_chunk
from retentive.errors import StateError
from retentive.models import MLP
from retentive.state import load_state
from retentive.state.loading import load_model
from retentive.state.remote import check_reachable, fetch_state, is_url, local_path, publish_state

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "er.yaml"
PER_CHUNK = 96


def _cli(*args: object, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "retentive.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _objects(s3, prefix: str = "") -> list[str]:
    fs = s3.filesystem()
    return sorted(fs.find(f"{s3.bucket}/{prefix}"))


@pytest.fixture(scope="module")
def chunks(tmp_path_factory, split_small) -> Path:
    train, _ = split_small
    folder = tmp_path_factory.mktemp("chunks")
    for index in (0, 1):
        write_chunk(folder / f"train_{index}.npz", train[index].subset(torch.arange(PER_CHUNK)))
    return folder


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


def test_is_url_and_file_urls_are_local_paths(tmp_path):
    assert is_url("s3://bucket/prefix") and is_url("memory://x") and is_url("gcs://b/k")
    assert not is_url("file:///tmp/x") and not is_url("/tmp/x") and not is_url(Path("relative/dir"))
    assert local_path(f"file://{tmp_path}/a%20b") == tmp_path / "a b"
    with pytest.raises(StateError, match="names host 'elsewhere'"):
        local_path("file://elsewhere/x")


def test_two_chunks_through_s3_resume_in_a_fresh_process(s3, chunks, tmp_path, monkeypatch):
    first, second = f"s3://{s3.bucket}/pipeline/chunk_0", f"s3://{s3.bucket}/pipeline/chunk_1"
    monkeypatch.chdir(tmp_path)
    # chunk 0: the CLI in this process, writing straight to s3://
    assert (
        main(
            [
                "update",
                "--config",
                str(CONFIG),
                "--data",
                str(chunks / "train_0.npz"),
                "--output-state",
                first,
                "--set",
                "logger=false",
            ]
        )
        == 0
    )
    assert not list(tmp_path.glob("*")), "nothing is left locally"
    # chunk 1: a fresh process resumes from chunk 0's remote state and publishes chunk 1's
    done = _cli(
        "update",
        "--config",
        CONFIG,
        "--data",
        chunks / "train_1.npz",
        "--input-state",
        first,
        "--output-state",
        second,
        "--set",
        "logger=false",
        "--threads",
        "1",
        env=s3.env(),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"state -> {second}" in done.stdout
    remote = load_state(fetch_state(second, tmp_path / "fetched_1"))
    assert (remote.manifest["updates_done"], remote.manifest["tasks_seen"]) == (2, {"0": PER_CHUNK, "1": PER_CHUNK})
    # the same second update from a local copy of chunk 0's state gives the same weights: it resumed exactly
    config = load_config(CONFIG, ["logger=false"])
    local_first = fetch_state(first, tmp_path / "fetched_0")
    updater = build_updater(
        config, input_state_folder=local_first, output_state_folder=tmp_path / "local_1", resume=False
    )
    from retentive.data.files import read_chunk

    updater.update(read_chunk(chunks / "train_1.npz"))
    local = load_state(tmp_path / "local_1")
    assert local.model.keys() == remote.model.keys()
    assert all(torch.equal(local.model[k], remote.model[k]) for k in local.model)
    # load_model reads the URL (verified) into a model built as the config builds it
    model = load_model(MLP(784, [100, 100], 10), second)
    assert all(torch.equal(v, remote.model[k]) for k, v in model.state_dict().items())
    # the layout: one committed version per URL, the pointer naming it
    pointer = json.loads(s3.filesystem().cat_file(f"{s3.bucket}/pipeline/chunk_1/current.json"))
    names = {p.rsplit("/", 1)[-1] for p in _objects(s3, "pipeline/chunk_1")}
    assert names == {"current.json", "manifest.json", "model.pt", "learner.pt", "memory.pt"}
    assert all(f"versions/{pointer['version']}/" in p for p in _objects(s3, "pipeline/chunk_1") if "versions" in p)
    # inspect reads URLs too
    assert main(["inspect", second]) == 0


def test_corrupted_objects_are_detected_naming_the_url(s3, trained, tmp_path, capsys):
    url = f"s3://{s3.bucket}/corrupt"
    publish_state(trained[0], url)
    fs = s3.filesystem()
    version = json.loads(fs.cat_file(f"{s3.bucket}/corrupt/current.json"))["version"]
    model_key = f"{s3.bucket}/corrupt/versions/{version}/model.pt"
    good = fs.cat_file(model_key)
    fs.pipe_file(model_key, good[:-1] + bytes([good[-1] ^ 1]))  # one flipped bit, same size
    with pytest.raises(StateError, match=rf"{url}/versions/{version}/model.pt does not match its manifest checksum"):
        fetch_state(url, tmp_path / "a")
    assert not (tmp_path / "a").exists() and not list(tmp_path.iterdir()), "nothing half-fetched is left"
    with pytest.raises(StateError, match="does not match its manifest checksum"):
        load_model(MLP(), url)
    assert main(["inspect", url]) == 1
    assert "model.pt does not match" in capsys.readouterr().err
    fs.pipe_file(model_key, good)
    manifest_key = f"{s3.bucket}/corrupt/versions/{version}/manifest.json"
    fs.pipe_file(manifest_key, fs.cat_file(manifest_key).replace(b'"updates_done": 1', b'"updates_done": 7'))
    with pytest.raises(StateError, match="manifest.json does not match the checksum .*current.json records"):
        fetch_state(url, tmp_path / "b")


def test_sigkill_during_publish_leaves_a_committed_state_never_a_mix(s3, trained, tmp_path):
    url = f"s3://{s3.bucket}/killed"
    started = time.perf_counter()
    publish_state(trained[0], url)
    duration = time.perf_counter() - started  # one publish, on this machine's load now
    expected = {_sha(trained[0] / "model.pt"): "a", _sha(trained[1] / "model.pt"): "b"}
    rng = random.Random(0)
    debris_seen = 0
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "support" / "publish_worker.py"), url, *map(str, trained)],
        env=s3.env(PYTHONPATH=str(ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout.readline().strip() == "ready"
        for attempt in range(4):
            worker.stdin.write("go\n")
            worker.stdin.flush()
            writer = int(worker.stdout.readline())
            assert worker.stdout.readline().strip() == "started"
            # a random moment of the writer's first or second publish; the first kill early in one,
            # so that at least one lands before a commit
            time.sleep(rng.uniform(0, 0.4 * duration if attempt == 0 else 1.5 * duration))
            os.kill(writer, signal.SIGKILL)  # the writer dies wherever it is in publish_state
            assert worker.stdout.readline().strip() == "reaped"
            debris_seen += len(s3.filesystem().ls(f"{s3.bucket}/killed/versions")) > 1
            fetched = fetch_state(url, tmp_path / f"after_{attempt}")  # every checksum verified
            which = expected[_sha(fetched / "model.pt")]
            for name in ("learner.pt", "memory.pt"):  # the rest of the same version: never a mix
                assert _sha(fetched / name) == _sha(trained["ab".index(which)] / name)
            assert load_state(fetched).manifest["updates_done"] == {"a": 1, "b": 2}[which]
    finally:
        worker.kill()
        worker.wait()
    assert debris_seen, "at least one kill landed inside publish_state, before its commit"
    # the next publish removes what the killed writers left once it is older than the grace period
    # (here: at once), keeping the committed version and the one before it
    from retentive.state.remote import versions

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(versions, "GRACE_SECONDS", 0.0)
        committed = publish_state(trained[1], url)
    left = {p.rsplit("/", 1)[-1] for p in s3.filesystem().ls(f"{s3.bucket}/killed/versions")}
    assert left == {committed.version, committed.previous[0]["version"]}


@pytest.mark.parametrize("case", ["unreachable", "missing bucket", "bad credentials", "no state at input"])
def test_bad_locations_fail_before_anything_is_written(s3, case, tmp_path, monkeypatch):
    before = _objects(s3)
    output = f"s3://{s3.bucket}/never"
    kwargs = {"output": output}
    if case == "unreachable":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        match = "cannot be written: the server cannot be reached"
    elif case == "missing bucket":
        kwargs = {"output": "s3://no-such-bucket/x"}
        match = "the bucket 'no-such-bucket' does not exist"
    elif case == "bad credentials":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        match = "access denied"
    else:
        kwargs = {"output": output, "input_state": f"s3://{s3.bucket}/nothing-here"}
        match = "holds no retentive state"
    started = time.monotonic()
    with pytest.raises(StateError, match=match):
        der(**kwargs)
    assert time.monotonic() - started < 30
    monkeypatch.undo()
    assert _objects(s3) == before, "nothing was written"


def test_cli_reports_bad_credentials_in_one_line(s3, chunks, tmp_path, monkeypatch, capsys):
    before = _objects(s3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    code = main(
        [
            "update",
            "--config",
            str(CONFIG),
            "--data",
            str(chunks / "train_0.npz"),
            "--output-state",
            f"s3://{s3.bucket}/x",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "access denied" in err and f"s3://{s3.bucket}/x" in err
    monkeypatch.undo()
    assert not list(tmp_path.iterdir()) and _objects(s3) == before, "nothing was written"


def test_output_url_holding_a_state_is_refused_unless_in_place(s3, trained, split_small):
    url = f"s3://{s3.bucket}/taken"
    publish_state(trained[0], url)
    with pytest.raises(StateError, match="already holds a committed state"):
        der(url)
    with pytest.raises(ValueError, match="resume=True keeps per-epoch checkpoints"):
        der(f"s3://{s3.bucket}/fresh", resume=True)
    # in place: the same URL as input and output, as Renate pipelines run
    updater = der(url, url, max_epochs=1)
    assert updater.updates_done == 1
    updater.update(split_small[0][1].subset(torch.arange(32)))
    assert load_state(fetch_state(url, Path(updater.state_locations._workdir) / "check")).manifest["updates_done"] == 2


def test_memory_filesystem_and_reachability_probe(trained, tmp_path):
    url = "memory://retentive-test/state"
    with pytest.raises(StateError, match="holds no retentive state"):
        check_reachable(url, write=False)
    check_reachable(url, write=True)
    publish_state(trained[1], url)
    check_reachable(url, write=False)
    model = load_model(MLP(), url)
    saved = load_state(trained[1]).model
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    with pytest.raises(StateError, match="already exists and is not empty"):
        fetch_state(url, trained[0])
    (tmp_path / "empty").mkdir()
    assert (fetch_state(url, tmp_path / "empty") / "model.pt").is_file()


def test_a_plain_folder_at_a_url_is_read_and_a_failed_update_leaves_no_trace(trained, tmp_path):
    import gc

    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(str(trained[0]), "/retentive-test/plain", recursive=True)  # e.g. copied with aws s3 sync
    fetched = fetch_state("memory://retentive-test/plain", tmp_path / "plain")
    assert {p.name: _sha(p) for p in fetched.iterdir()} == {p.name: _sha(p) for p in trained[0].iterdir()}
    updater = der("memory://retentive-test/out", "memory://retentive-test/plain", max_epochs=1)
    workdir = Path(updater.state_locations._workdir)
    with pytest.raises(Exception, match="empty"):
        updater.update(torch.utils.data.TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)))
    assert not fs.exists("/retentive-test/out") and not (workdir / "output").exists()
    del updater
    gc.collect()
    assert not workdir.exists(), "the fetched input goes with the updater"


def test_a_missing_backend_names_the_extra_and_an_unknown_scheme_is_refused(monkeypatch, capsys, tmp_path):
    import fsspec  # noqa: F401 - loads fsspec.registry

    from retentive.state.remote import MissingExtraError

    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if s3fs were not installed
    registry = sys.modules["fsspec.registry"]._registry  # fsspec.registry is its read-only view
    for name in ("s3", "s3a"):
        monkeypatch.delitem(registry, name, raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'retentive\[s3\]'"):
        check_reachable("s3://bucket/x", write=True)
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", "s3://bucket/x"]) == 1
    assert "retentive[s3]" in capsys.readouterr().err
    with pytest.raises(StateError, match="fsspec knows no filesystem nosuch://"):
        fetch_state("nosuch://x/y", tmp_path / "z")


def test_a_failed_upload_changes_nothing(trained, split_small, monkeypatch, tmp_path):
    from fsspec.implementations.memory import MemoryFileSystem

    url = "memory://retentive-test/failing"
    publish_state(trained[0], url)
    real_put, calls = MemoryFileSystem.put_file, []

    def flaky_put(self, lpath, rpath, **kwargs):
        calls.append(rpath)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_put(self, lpath, rpath, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "put_file", flaky_put)
    with pytest.raises(StateError, match="No space left on device.*its committed state is unchanged"):
        publish_state(trained[1], url)
    fs = MemoryFileSystem()
    assert len(fs.ls("/retentive-test/failing/versions")) == 1, "the failed version was removed"
    assert load_state(fetch_state(url, tmp_path / "a")).manifest["updates_done"] == 1
    # through an updater: the update fails, the updater is put back, the stand-in is removed
    calls.clear()
    updater = der("memory://retentive-test/failing-out", max_epochs=1)
    with pytest.raises(StateError, match="memory://retentive-test/failing-out"):
        updater.update(split_small[0][0].subset(torch.arange(32)))
    assert updater.updates_done == 0 and not (Path(updater.state_locations._workdir) / "output").exists()
