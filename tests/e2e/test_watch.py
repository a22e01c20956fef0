"""``retentive watch``: chunks arriving in a folder become updates of a model home, exactly once
each, in name order; a corrupt chunk is quarantined; --status reports; SIGTERM stops cleanly;
clear errors. The kill tests run benchmarks/watch_kill.py (its full run: 12 kills, see
docs/benchmarks/reliability.md) with a few kills, locally and against S3 (moto's server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from s3_server import s3  # noqa: F401 - the fixture
from script_modules import ROOT, load_script

from retentive.cli import main
from retentive.service import WatchService, WatchSettings, read_status
from retentive.state.home import ModelHome

pytestmark = pytest.mark.slow

bench = load_script("benchmarks/watch_kill.py", "watch_kill_bench")


@pytest.fixture(scope="module")
def files(mnist_available) -> list[tuple[str, bytes]]:
    """Six real-MNIST chunk files of 64 samples, the fourth (day3.npz) truncated."""
    return bench.chunk_files(0)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "watch.yaml"
    path.write_text(bench.CONFIG, encoding="utf-8")
    return path


def _drop(folder: Path, files: list[tuple[str, bytes]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files:
        (folder / name).write_bytes(data)
    return folder


def _served(home: Path) -> dict[str, str]:
    return {name: entry["sha256"] for name, entry in ModelHome(home).manifest()["files"].items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, files, config) -> dict[str, str]:
    """An uninterrupted run over the first three chunks: the served files' sha256."""
    workdir = tmp_path_factory.mktemp("reference")
    source = _drop(workdir / "source", files[:3])
    WatchService(
        str(source), str(workdir / "home"), WatchSettings(config), once=True, settle=0, log=lambda _: None
    ).run()
    return _served(workdir / "home")


def test_once_takes_each_chunk_once_in_order_quarantines_and_reports(tmp_path, files, config, capsys):
    source, home = _drop(tmp_path / "incoming", files[:4]), tmp_path / "home"
    (source / "day1x.csv").write_text("a,b,target\n0.5,1.5,3\n")  # readable, but not what the model takes
    command = ["watch", str(source), "--home", str(home), "--config", str(config), "--once", "--settle", "0"]
    assert main(command) == 0
    lines = capsys.readouterr().out.splitlines()
    names = ["day0.npz", "day1.npz", "day1x.csv", "day2.npz", "day3.npz"]
    assert [line.split(":")[1].strip() for line in lines] == names
    assert "serves" in lines[0] and "serves" in lines[1] and "serves" in lines[3]
    assert "day1x.csv: quarantined" in lines[2] and "do not fit the model MLP" in lines[2]
    assert "day3.npz: quarantined" in lines[4] and "zip" in lines[4]

    assert main(command) == 0  # nothing new: nothing taken again
    assert capsys.readouterr().out == ""
    served = ModelHome(home).current()
    _drop(source, files[4:5])
    assert main(command) == 0
    assert capsys.readouterr().out.count("\n") == 1 and ModelHome(home).history()[1].id == served.id

    assert main(["watch", "--status", "--home", str(home)]) == 0
    text = capsys.readouterr().out
    assert "4 promoted, 0 challenger, 0 rejected, 0 skipped, 2 quarantined" in text and "day3.npz: quarantined" in text
    assert "service: finished" in text
    assert main(["watch", "--status", "--home", str(home), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in status["chunks"]] == [*names, "day4.npz"]
    assert [c["update"] for c in status["chunks"] if c["outcome"] == "promoted"] == [0, 1, 2, 3]
    assert [c["name"] for c in status["quarantined"]] == ["day1x.csv", "day3.npz"] and status["pending"] is None
    assert json.loads((home / "watch-status.json").read_text())["state"] == "finished"


def test_the_same_chunks_give_the_same_state_bit_for_bit(tmp_path, files, config, reference):
    source = _drop(tmp_path / "incoming", files[:3])
    WatchService(str(source), str(tmp_path / "home"), WatchSettings(config), once=True, settle=0, log=print).run()
    assert _served(tmp_path / "home") == reference


@pytest.mark.filterwarnings("ignore::retentive.gates.transaction.UnguardedChunks")  # day0 was trained ungated
def test_gate_keeps_a_refused_candidate_and_shift_skips_a_like_chunk(tmp_path, files, config, capsys):
    gate = ["--gate", "min_new_accuracy=0.99", "--gate", "holdout=0.25"]  # no candidate passes
    source = _drop(tmp_path / "incoming", files[:1])

    def watch(home: str, *extra: str) -> list[str]:
        command = ["watch", str(source), "--home", home, "--config", str(config), "--once", "--settle", "0"]
        assert main([*command, *extra]) == 0
        return capsys.readouterr().out.splitlines()

    assert watch(str(tmp_path / "gated"), *gate) == [
        "retentive watch: day0.npz: refused by the gate; nothing kept (no version serves yet)"
    ]
    home = str(tmp_path / "home")
    assert "serves" in watch(home)[0]
    _drop(source, files[1:2])
    assert "kept as the challenger" in watch(home, *gate, "--reconfigure")[0]  # the gate from the next chunk on
    assert ModelHome(home).challenger() is not None and len(ModelHome(home).history()) == 2

    shift = str(tmp_path / "shift")
    lines = watch(shift, "--shift", "labels", "--shift-alpha", "0.001")
    assert "serves" in lines[0] and "day1.npz: skipped, no shift (labels" in lines[1]
    assert read_status(shift)["counts"]["skipped"] == 1


def test_clear_errors(tmp_path, files, config, capsys):
    source = _drop(tmp_path / "incoming", files[:1])
    single = tmp_path / "single"
    single.mkdir()
    (single / "manifest.json").write_text("{}")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    cases = [
        (["watch", str(tmp_path / "absent"), "--home", str(tmp_path / "h")], "does not exist"),
        (["watch", str(source), "--home", str(single)], "single state folder, not a model home"),
        (["watch", str(source), "--home", str(other)], "folder of other files, not a model home"),
    ]
    for command, expected in cases:
        assert main([*command, "--config", str(config), "--once"]) == 1
        assert expected in capsys.readouterr().err
    assert main(["watch", str(source), "--home", str(tmp_path / "h")]) == 1
    assert "needs SOURCE and --config" in capsys.readouterr().err
    home = str(tmp_path / "h")
    assert main(["watch", str(source), "--home", home, "--config", str(config), "--once", "--settle", "0"]) == 0
    changed = ["watch", str(source), "--home", home, "--config", str(config), "--once", "--set", "seed=1"]
    assert main(changed) == 1
    assert "other settings (overrides: recorded [], given ['seed=1'])" in capsys.readouterr().err
    assert main([*changed, "--reconfigure"]) == 0
    assert main(["watch", "--status", "--home", str(tmp_path / "never")]) == 0
    assert "no watch service has processed a chunk here yet" in capsys.readouterr().out


def _service(source: Path, home: Path, config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable,
        "-m",
        "retentive.cli",
        "watch",
        str(source),
        "--home",
        str(home),
        "--config",
        str(config),
    ]
    command += ["--poll", "0.2", "--settle", "0", "--threads", "1"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigterm_during_an_update_stops_cleanly_and_the_chunk_is_taken_again(tmp_path, files, config, reference):
    source, home = _drop(tmp_path / "incoming", files[:1]), tmp_path / "home"
    process = _service(source, home, config)
    deadline = time.monotonic() + 120
    while read_status(str(home))["counts"]["promoted"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    _drop(source, files[1:2])
    while read_status(str(home))["pending"] is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 143, out
    assert "stopped by SIGTERM; every chunk finished is recorded" in out
    status = read_status(str(home))
    assert status["service"]["state"] == "stopped (SIGTERM)"
    assert [c["name"] for c in status["chunks"]] in (["day0.npz"], ["day0.npz", "day1.npz"])
    if len(status["chunks"]) == 1:  # abandoned before its commit: still pending, taken again first
        assert status["pending"]["name"] == "day1.npz"

    _drop(source, files[2:3])
    WatchService(str(source), str(home), WatchSettings(config), once=True, settle=0, log=print).run()
    assert [c["name"] for c in read_status(str(home))["chunks"]] == ["day0.npz", "day1.npz", "day2.npz"]
    assert _served(home) == reference


def test_sigkill_at_random_moments_local(tmp_path, mnist_available, capsys):
    """benchmarks/watch_kill.py's command line at a tiny setting (3 kills, one of each kind; the full run has 12)."""
    out = tmp_path / "watch_kill.json"
    assert bench.main(["--kills", "3", "--seed", "3", "--interval", "0.3", "--out", str(out)]) == 0, capsys.readouterr()
    results = json.loads(out.read_text())
    assert results["problems"] == [] and [k["mode"] for k in results["kills"]] == list(bench.MODES)
    assert results["sigterm_exit"] == 143 and results["recovered_after_commit"] >= 1


def test_sigkill_at_random_moments_s3(tmp_path, s3, mnist_available):  # noqa: F811 - the fixture
    results = bench.run_watch_kill_test(
        2,
        seed=5,
        workdir=tmp_path,
        source=f"s3://{s3.bucket}/watch/incoming",
        home=f"s3://{s3.bucket}/watch/home",
        env=s3.env(),
        interval=0.3,
    )
    assert results["problems"] == [], results
    assert len(results["kills"]) == 2 and results["sigterm_exit"] == 143 and results["recovered_after_commit"] >= 1
