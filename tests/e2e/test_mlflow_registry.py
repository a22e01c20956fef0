"""The MLflow registry against a real tracking server (SQLite backend, proxied artifacts): what one
update's run holds, the registered versions and where ``champion`` / ``challenger`` point after
promotions, rejections, a manual promote and a rollback, and bounded failures."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from mlflow_server import mlflow_uri  # noqa: F401 - the fixture

from retentive.errors import RegistryError
from retentive.registry import CHALLENGER, CHAMPION, MlflowRegistry, UpdateRecord, open_registry, record_decision

pytestmark = pytest.mark.slow

MATRIX = [[0.98], [0.95, 0.97], [0.91, 0.93, 0.96]]
REPORT = {"passed": False, "criteria": [{"name": "max_drop", "limit": 2.0, "value": 7.1, "passed": False}]}


def _record(candidate: str, promoted: bool, state_url: str = "", **fields) -> UpdateRecord:
    return UpdateRecord(
        candidate=candidate, state_url=state_url or f"/homes/digits/versions/{candidate}", promoted=promoted, **fields
    )


def _mlflow(uri: str):
    """MLflow's own client, to read back what retentive wrote (imported here: the import alone
    takes seconds, and every pytest run collects this module)."""
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _read_json(client, run_id: str, path: str, folder) -> object:
    return json.loads(Path(client.download_artifacts(run_id, path, str(folder))).read_text())


def test_a_run_holds_the_update_and_its_version_points_at_the_state(mlflow_uri, tmp_path):
    registry = MlflowRegistry(mlflow_uri, model_name="runs-model")
    registry.check()
    record = _record(
        "v0003",
        promoted=False,
        parent="v0002",
        hyperparameters={"learning_rate": 0.05, "memory": {"size": 500, "policy": "reservoir"}, "seed": 7},
        accuracy_matrix=MATRIX,
        forgetting=0.045,
        flip_rates={"nfr": 0.031, "pfr": 0.02},
        gate_report=REPORT,
        lineage={"parent_digest": "ab12", "data_fingerprint": "cd34"},
        metrics={"gate_seconds": 1.5},
    )
    landed = record_decision(registry, record)
    client = _mlflow(mlflow_uri)
    run = client.get_run(landed.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "v0003"
    assert run.data.params == {
        "learning_rate": "0.05",
        "memory.size": "500",
        "memory.policy": "reservoir",
        "seed": "7",
    }
    assert [(m.step, m.value) for m in client.get_metric_history(landed.run_id, "accuracy/chunk_0")] == [
        (0, 0.98),
        (1, 0.95),
        (2, 0.91),
    ]
    latest = run.data.metrics
    assert latest["accuracy/chunk_2"] == 0.96 and latest["forgetting"] == 0.045 and latest["gate_seconds"] == 1.5
    assert latest["average_accuracy"] == pytest.approx((0.91 + 0.93 + 0.96) / 3)
    assert latest["flips/nfr"] == 0.031 and latest["flips/pfr"] == 0.02
    tags = run.data.tags
    assert tags["retentive.candidate"] == "v0003" and tags["retentive.parent"] == "v0002"
    assert tags["retentive.decision"] == CHALLENGER and tags["retentive.gate"] == "failed"
    names = {a.path for a in client.list_artifacts(landed.run_id)}
    assert names == {"accuracy_matrix.json", "gate_report.json", "lineage.json", "state"}
    assert _read_json(client, landed.run_id, "gate_report.json", tmp_path) == REPORT
    assert _read_json(client, landed.run_id, "accuracy_matrix.json", tmp_path) == MATRIX
    assert _read_json(client, landed.run_id, "state/state.json", tmp_path)["url"] == "/homes/digits/versions/v0003"
    version = client.get_model_version("runs-model", landed.version)
    assert version.run_id == landed.run_id and version.source == f"runs:/{landed.run_id}/state"
    assert version.tags["retentive.candidate"] == "v0003" and version.tags["retentive.state"].endswith("v0003")
    assert registry.version_of("v0003") == landed.version and registry.version_of("v9999") is None


def test_a_state_at_a_url_is_the_version_source_and_a_copied_state_is_in_the_run(mlflow_uri, tmp_path):
    remote = MlflowRegistry(mlflow_uri, model_name="sources-model")
    landed = record_decision(remote, _record("v0001", True, state_url="s3://states/digits/versions/v0001"))
    client = _mlflow(mlflow_uri)
    assert client.get_model_version("sources-model", landed.version).source == "s3://states/digits/versions/v0001"
    state = tmp_path / "v0002"
    (state / "memory").mkdir(parents=True)
    (state / "manifest.json").write_text('{"format": 3}')
    (state / "memory" / "buffer.pt").write_bytes(b"\x00" * 64)
    copying = MlflowRegistry(mlflow_uri, model_name="sources-model", copy_state=True)
    landed = record_decision(copying, _record("v0002", True, state_url=str(state)))
    stored = {a.path for a in client.list_artifacts(landed.run_id, "state")}
    assert stored == {"state/manifest.json", "state/memory", "state/state.json"}
    download = client.download_artifacts(landed.run_id, "state/memory/buffer.pt", str(tmp_path / "back"))
    assert Path(download).read_bytes() == b"\x00" * 64


def test_the_aliases_follow_promotions_rejections_a_manual_promote_and_a_rollback(mlflow_uri):
    registry = open_registry(mlflow_uri, model_name="aliases-model")
    assert registry.aliases() == {}
    first = record_decision(registry, _record("v0001", True))
    assert registry.aliases() == {CHAMPION: first.version}
    second = record_decision(registry, _record("v0002", True, parent="v0001", gate_report={"passed": True}))
    assert registry.aliases() == {CHAMPION: second.version}
    rejected = record_decision(registry, _record("v0003", False, parent="v0002", gate_report=REPORT))
    assert rejected.alias == CHALLENGER
    assert registry.aliases() == {CHAMPION: second.version, CHALLENGER: rejected.version}
    fourth = record_decision(registry, _record("v0004", True, parent="v0002", gate_report={"passed": True}))
    assert registry.aliases() == {CHAMPION: fourth.version, CHALLENGER: rejected.version}
    # `retentive promote v0003`: the rejected candidate serves after all, and is no challenger any more
    registry.set_champion(registry.version_of("v0003"))
    assert registry.aliases() == {CHAMPION: rejected.version}
    # `retentive rollback`: back to v0004
    registry.set_champion(registry.version_of("v0004"))
    assert registry.aliases() == {CHAMPION: fourth.version}
    assert registry.state_url() == "/homes/digits/versions/v0004" and registry.state_url(CHALLENGER) is None
    versions = _mlflow(mlflow_uri).search_model_versions("name = 'aliases-model'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3, 4]


def test_a_server_that_goes_away_fails_one_request_in_seconds_not_minutes():
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{closed.getsockname()[1]}"
    registry = MlflowRegistry(uri, model_name="gone", timeout=2)
    start = time.monotonic()
    with pytest.raises(RegistryError, match=r"could not record the update of candidate 'v0001'"):
        registry.record_update(_record("v0001", True))
    assert time.monotonic() - start < 30


def test_without_a_tracking_uri_the_local_store_is_mlruns_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    registry = MlflowRegistry(model_name="local-model")
    assert registry.tracking_uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    registry.check()
    landed = record_decision(registry, _record("v0001", True, accuracy_matrix=[[0.9]]))
    assert registry.aliases() == {CHAMPION: landed.version}
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    assert (tmp_path / "mlruns" / "artifacts").is_dir() and any((tmp_path / "mlruns" / "artifacts").rglob("state.json"))
