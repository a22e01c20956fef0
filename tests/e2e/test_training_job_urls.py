"""run_training_job with its state at s3:// URLs (a local S3 server): the input is fetched and
verified, the winner is published with its hpo.csv, and an unreachable URL is refused before any
trial runs."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
from first_run_support import closed_port_url
from s3_server import forget_s3_clients, s3  # noqa: F401 - the fixture

from retentive.errors import StateError
from retentive.state import load_state
from retentive.state.remote import fetch_state
from retentive.training import run_training_job

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONSTANTS = {"optimizer": "SGD", "learning_rate": 0.05, "memory_size": 50}  # one job, in this process


def _job(tmp_path: Path, **changes):
    config = tmp_path / "renate_config.py"
    if not config.exists():
        shutil.copy(ROOT / "tests" / "support" / "hpo_config.py", config)
    arguments = dict(
        mode="max",
        config_space=dict(CONSTANTS),
        metric="val_accuracy",
        backend="local",
        updater="DER",
        max_epochs=1,
        chunk_id=0,
        config_file=str(config),
        working_directory=str(tmp_path / "work"),
    )
    arguments.update(changes)
    return run_training_job(**arguments)


def _hpo_rows(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / "hpo.csv").read_text(encoding="utf-8"))))


def test_two_chunks_through_s3_urls_keep_the_search_record(tmp_path, s3):
    first, second = f"s3://{s3.bucket}/job/chunk_0", f"s3://{s3.bucket}/job/chunk_1"
    _job(tmp_path, output_state_url=first)
    result = _job(tmp_path, chunk_id=1, input_state_url=first, output_state_url=second)
    assert result.output_state == second
    state = fetch_state(second, tmp_path / "fetched")
    assert load_state(state).manifest["updates_done"] == 2
    # the input's hpo.csv came down with it, and the published state carries both updates' rows
    assert [row["update_id"] for row in _hpo_rows(state)] == ["0", "1"]
    record = load_state(state).manifest["search"]["hpo_csv"]
    assert record["bytes"] == (state / "hpo.csv").stat().st_size
    assert not list((tmp_path / "work").glob("input-*")), "the fetched input copy is removed"


@pytest.fixture
def fresh_clients():
    """S3 clients are built from the environment they first see: none from before or after this test."""
    forget_s3_clients()
    yield
    forget_s3_clients()


@pytest.mark.parametrize("where", ["output_state_url", "input_state_url"])
def test_an_unreachable_url_is_refused_before_any_trial(tmp_path, monkeypatch, fresh_clients, where):
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_port_url().rstrip("/"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    changes = {where: "s3://bucket/state"}
    changes.setdefault("output_state_url", str(tmp_path / "out"))
    with pytest.raises(StateError, match="s3://bucket/state"):
        _job(tmp_path, **changes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renate_config.py"], "nothing written"


def test_promoting_never_replaces_a_state_committed_at_the_output_url_meanwhile(tmp_path, s3):
    """A job's output URL was empty when checked; a state committed there during the trials wins,
    and the winner's promotion is a conflict that leaves that state in place."""
    from retentive.errors import StateConflictError
    from retentive.state.remote import publish_state
    from retentive.training.locations import promote

    source = f"s3://{s3.bucket}/promote/source"
    _job(tmp_path, output_state_url=source)
    winner = fetch_state(source, tmp_path / "winner")
    target = f"s3://{s3.bucket}/promote/target"
    other = publish_state(winner, target, expect=None)  # another job committed first
    with pytest.raises(StateConflictError):
        promote(winner, target, {"search": {"note": "late"}}, {"hpo.csv": b"x\n"})
    from retentive.state.remote.filesystem import open_url
    from retentive.state.remote.pointer import read_pointer

    fs, root = open_url(target)
    assert read_pointer(fs, root, target).version == other.version
    kept = fetch_state(target, tmp_path / "kept")
    assert (kept / "hpo.csv").read_bytes() != b"x\n" and load_state(kept).manifest.get("search") != {"note": "late"}
