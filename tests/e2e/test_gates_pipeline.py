"""A five-chunk MNIST pipeline under a release gate, with one harmful chunk (labels permuted):
its candidate is rejected and kept as the challenger, the served model stays the previous one,
and the next good chunk updates from that champion; in a local model home and at ``s3://``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow_server import mlflow_uri  # noqa: F401 - the fixture
from s3_server import s3  # noqa: F401 - the fixture
from script_modules import load_script

from retentive.gates import Gate, GateRejected
from retentive.registry import CHALLENGER, CHAMPION, MlflowRegistry
from retentive.state import load_state
from retentive.state.home import ModelHome

pytestmark = pytest.mark.slow
HARMFUL = 2


def _benchmark():
    """The pipeline the gate's cost is measured on (benchmarks/gate_cost.py): its chunks and updater."""
    return load_script("benchmarks/gate_cost.py", "retentive_gate_cost")


@pytest.fixture(scope="module")
def pipeline(mnist_train):
    bench = _benchmark()
    return bench, bench.pipeline_chunks(mnist_train, per_chunk=1000, harmful=HARMFUL)


def _served_weights(home: ModelHome, scratch: Path) -> dict[str, torch.Tensor]:
    return load_state(home.fetch(scratch)).model


def _run(bench, chunks, home: ModelHome, scratch: Path, registry=None) -> list[dict]:
    """Each chunk in a fresh updater built from the home's serving version, as a pipeline runs."""
    gate = Gate(bench.CRITERIA, holdout=0.2)
    records = []
    for index, chunk in enumerate(chunks):
        before = home.current()
        updater = bench.make_updater(
            0,
            batch_size=32,
            max_epochs=2,
            input_state_folder=None if before is None else home.location,
            output_state_folder=home.location,
        )
        record = {"before": before, "updates_done": updater.updates_done}
        try:
            updater.update(chunk, gate=gate, registry=registry)
            record["report"] = updater.gate_report
        except GateRejected as rejected:
            record["report"], record["rejected"] = rejected.report, rejected
            served = _served_weights(home, scratch / f"served_{index}")
            held = updater.model.state_dict()  # the updater holds the champion again
            record["holds_champion"] = all(torch.equal(held[k], v) for k, v in served.items())
        record["after"] = home.current()
        records.append(record)
    return records


def _check(records: list[dict], home: ModelHome) -> None:
    decisions = [r["report"].decision for r in records]
    assert decisions == ["promote", "promote", "reject", "promote", "promote"], [r["report"].summary() for r in records]
    bad = records[HARMFUL]
    failed = {v.criterion for v in bad["report"].failed}
    assert "max_drop" in failed and bad["report"].as_dict()["criteria"][0]["value"] > 20  # points lost on chunk 0/1
    assert bad["after"].id == bad["before"].id  # the champion still serves
    assert bad["holds_champion"] and "kept as the challenger" in str(bad["rejected"])
    challenger = home.challenger()
    assert challenger is not None and challenger.report["decision"] == "reject"
    assert challenger.report == bad["report"].as_dict()  # the report travels with the kept candidate
    assert home.manifest(challenger)["lineage"]["gate"]["decision"] == "reject"
    good = records[HARMFUL + 1]  # the next chunk updates from the champion: two updates done, not three
    assert good["before"].id == bad["before"].id and good["updates_done"] == 2
    assert [c.chunk for c in good["report"].measures.chunks] == ["0", "1", "2"]  # the harmful one's held-out dropped
    assert good["after"].id != good["before"].id
    final = home.manifest()
    assert final["updates_done"] == 4 and final["lineage"]["gate"]["decision"] == "promote"
    assert [v.role for v in home.history()][:2] == ["current", "previous"]
    json.dumps([r["report"].as_dict() for r in records])  # every report is plain JSON


def _check_registry(registry: MlflowRegistry, home: ModelHome) -> None:
    """The aliases mirror the home: champion on its current version, challenger on the rejected one."""
    aliases = registry.aliases()
    assert aliases[CHAMPION] == registry.version_of(home.current().id)
    assert aliases[CHALLENGER] == registry.version_of(home.challenger().id)
    assert registry.version_of(home.history()[1].id) is not None  # every candidate is a version


def _check_matrix(uri: str, registry: MlflowRegistry, records: list[dict], folder: Path) -> None:
    """The run of the fourth update holds the accuracy matrix of the served chain: its rows are the
    candidate accuracies of the gate reports of updates 1, 2 and 4 (the rejected third is no
    ancestor), and its forgetting is the one read off that matrix."""
    from mlflow import MlflowClient

    from retentive.evaluation import forgetting

    client = MlflowClient(uri)
    fourth = records[HARMFUL + 1]
    run_id = client.get_model_version(registry.model_name, registry.version_of(fourth["after"].id)).run_id
    matrix = json.loads(Path(client.download_artifacts(run_id, "accuracy_matrix.json", str(folder))).read_text())
    chain = [records[0], records[1], fourth]
    assert matrix == [[c["candidate_accuracy"] for c in r["report"].as_dict()["chunks"]] for r in chain]
    assert [len(row) for row in matrix] == [1, 2, 3]
    square = torch.tensor([row + [0.0] * (3 - len(row)) for row in matrix], dtype=torch.float64)
    logged = client.get_run(run_id).data.metrics
    by_hand = sum(max(matrix[k][j] for k in range(j, 2)) - matrix[2][j] for j in range(2)) / 2
    assert logged["forgetting"] == pytest.approx(forgetting(square)) == pytest.approx(by_hand)
    assert logged["accuracy/chunk_2"] == matrix[2][2]


def test_five_chunk_pipeline_in_a_local_home_with_a_registry(pipeline, tmp_path, mlflow_uri):  # noqa: F811
    bench, chunks = pipeline
    home = ModelHome(tmp_path / "home").create()
    registry = MlflowRegistry(mlflow_uri, model_name="gated-local")
    records = _run(bench, chunks, home, tmp_path, registry)
    _check(records, home)
    _check_registry(registry, home)
    _check_matrix(mlflow_uri, registry, records, tmp_path / "artifacts")


def test_five_chunk_pipeline_in_a_home_at_s3_with_a_registry(pipeline, tmp_path, s3, mlflow_uri):  # noqa: F811
    bench, chunks = pipeline
    home = ModelHome(f"s3://{s3.bucket}/gated")
    registry = MlflowRegistry(mlflow_uri, model_name="gated-s3")
    _check(_run(bench, chunks, home, tmp_path, registry), home)
    _check_registry(registry, home)
