"""``retentive update --gate``: a promoted candidate exits 0, a rejected one exits 4 with one line
and its report in ``--summary``; a wrong gate or an unreachable registry fails before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_modules import write_gate_pipeline_chunks

from retentive.cli import main
from retentive.state.home import ModelHome

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "er.yaml")
COMMON = [
    "--config", CONFIG, "--threads", "1", "--set", "logger=false",
    "--set", "updater.init_args.batch_size=32", "--set", "trainer.max_epochs=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def chunk_files(tmp_path_factory, mnist_train) -> Path:
    return write_gate_pipeline_chunks(tmp_path_factory.mktemp("gate_chunks"), mnist_train, "retentive_gate_cost_cli")


def _update(home: ModelHome, chunk: Path, *extra: str, first: bool = False) -> int:
    states = (
        ["--output-state", home.location]
        if first
        else ["--input-state", home.location, "--output-state", home.location]
    )
    return main(["update", *COMMON, "--data", str(chunk), *states, *extra])


def test_a_rejected_candidate_exits_4_with_one_line_and_its_report(chunk_files, tmp_path, capsys):
    home = ModelHome(tmp_path / "home").create()
    gate = ["--gate", "max_drop=5", "--gate", "holdout=0.2", "--set", "gate.min_new_accuracy=0.5"]
    assert _update(home, chunk_files / "chunk_0.npz", *gate, first=True) == 0
    assert _update(home, chunk_files / "chunk_1.npz", *gate) == 0
    out = capsys.readouterr().out
    assert "gate: promote" in out
    champion = home.current()
    summary = tmp_path / "summary.json"
    code = _update(home, chunk_files / "chunk_2.npz", *gate, "--summary", str(summary))
    out, err = capsys.readouterr()
    assert code == 4 and err == ""
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("retentive update: gate: reject")
    assert "max_drop" in lines[0] and f"which still serves version {champion.id}" in lines[0]
    report = json.loads(summary.read_text())["gate"]
    criteria = [c["criterion"] for c in report["criteria"]]  # the config's (--set) first, then --gate's
    assert report["decision"] == "reject" and criteria == ["min_new_accuracy", "max_drop"]
    assert home.current().id == champion.id and home.challenger().report == report


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--gate", "max_dorp=5", "--gate", "holdout=0.1"], "unknown gate criterion 'max_dorp'"),
        (["--gate", "max_drop=5"], "a gate needs held-out data"),
        (["--gate", "min_new_accuracy=90", "--gate", "holdout=0.1"], r"must lie in [0, 1], got 90"),
        (["--set", "gate.max_drop=5", "--set", "gate.typo=1", "--gate", "holdout=0.1"], "gate.typo: unknown gate"),
        (["--gate", "holdout=0.1"], "no gate criterion is set"),
        (["--gate", "max_drop=5", "--gate", "holdout=0.1", "--registry", "http://127.0.0.1:9"], "registry"),
    ],
)
def test_bad_gates_and_an_unreachable_registry_fail_before_training(chunk_files, tmp_path, capsys, flags, message):
    home = ModelHome(tmp_path / "home").create()
    code = _update(home, chunk_files / "chunk_0.npz", *flags, first=True)
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("retentive update: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert home.current() is None and not any((Path(home.location) / "versions").iterdir())  # nothing written


def test_a_gate_makes_an_absent_folder_a_home_but_never_a_folder_holding_something_else(chunk_files, tmp_path, capsys):
    occupied = tmp_path / "s0"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("not a state")
    code = main(
        ["update", *COMMON, "--data", str(chunk_files / "chunk_0.npz"), "--output-state", str(occupied),
         "--gate", "max_drop=5", "--gate", "holdout=0.1"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1 and err.startswith("retentive update: error: ") and "created the model home" not in out
    assert sorted(p.name for p in occupied.iterdir()) == ["notes.txt"]  # refused before training, nothing written
    code = main(
        ["update", *COMMON, "--data", str(chunk_files / "chunk_0.npz"), "--output-state", str(tmp_path / "s1"),
         "--gate", "max_drop=5", "--gate", "holdout=0.1"]
    )  # fmt: skip
    assert code == 0 and f"created the model home {tmp_path / 's1'}" in capsys.readouterr().out
    assert ModelHome(tmp_path / "s1").current() is not None


def test_named_held_out_data_instead_of_a_holdout_share(chunk_files, tmp_path, capsys):
    home = ModelHome(tmp_path / "home").create()
    summary = tmp_path / "summary.json"
    held = ["--gate", "min_new_accuracy=0.5", "--gate-data", str(chunk_files / "chunk_1.npz")]
    assert _update(home, chunk_files / "chunk_0.npz", *held, "--summary", str(summary), first=True) == 0
    report = json.loads(summary.read_text())["gate"]
    assert [(c["chunk"], c["samples"]) for c in report["chunks"]] == [("0", 1000)]  # all of it, nothing held back
    assert json.loads(summary.read_text())["samples"] == 1000
    both = ["--gate-data", str(chunk_files / "chunk_1.npz"), "--gate", "holdout=0.1", "--gate", "max_drop=1"]
    assert _update(home, chunk_files / "chunk_1.npz", *both) == 1
    assert "named twice" in capsys.readouterr().err
