"""The registry without a server: what a run is made of, and the up-front check's clear, quick
errors (nothing listening, a server that never answers, a server that is not MLflow, no extra)."""

from __future__ import annotations

import http.server
import importlib.util
import socket
import subprocess
import sys
import threading
import time

import pytest

from retentive.errors import RegistryError, RetentiveError
from retentive.registry import CHALLENGER, CHAMPION, MlflowRegistry, Registry, UpdateRecord, open_registry
from retentive.registry.contents import documents, flatten, metric_points, tags


def _record(**fields) -> UpdateRecord:
    return UpdateRecord(**{"candidate": "v0002", "state_url": "s3://b/h/versions/v0002", "promoted": True, **fields})


def test_nested_hyperparameters_become_dotted_text_parameters():
    flat = flatten({"lr": 0.1, "memory": {"size": 10, "policy": {"name": "reservoir"}}, "classes": [0, 1], "on": True})
    assert flat == {
        "lr": "0.1",
        "memory.size": "10",
        "memory.policy.name": "reservoir",
        "classes": "[0, 1]",
        "on": "true",
    }
    assert len(flatten({"long": "x" * 10_000})["long"]) == 6000


def test_the_accuracy_matrix_is_one_series_per_chunk_and_non_finite_numbers_stay_out_of_the_metrics():
    record = _record(
        accuracy_matrix=[[0.9], [0.8, 0.95]], forgetting=0.1, flip_rates={"nfr": float("nan")}, metrics={"s": 2.0}
    )
    points = metric_points(record)
    assert ("accuracy/chunk_0", 0.9, 0) in points and ("accuracy/chunk_0", 0.8, 1) in points
    assert ("accuracy/chunk_1", 0.95, 1) in points and ("average_accuracy", pytest.approx(0.875), 1) in points
    assert ("forgetting", 0.1, 1) in points and ("s", 2.0, 1) in points
    assert not [p for p in points if p[0] == "flips/nfr"]


def test_tags_and_documents_say_what_was_decided():
    rejected = _record(promoted=False, parent="v0001", gate_report={"passed": False})
    assert tags(rejected)["retentive.decision"] == CHALLENGER and tags(rejected)["retentive.gate"] == "failed"
    assert tags(_record())["retentive.decision"] == CHAMPION and tags(_record())["retentive.gate"] == "none"
    assert "retentive.parent" not in tags(_record())
    assert "gate_report.json" in documents(rejected) and "gate_report.json" not in documents(_record())
    assert documents(rejected)["state/state.json"]["url"] == "s3://b/h/versions/v0002"


def test_open_registry_reads_the_cli_value_and_the_mlflow_registry_is_a_registry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = open_registry("local", model_name="m")
    assert isinstance(local, Registry) and local.tracking_uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert open_registry("http://h:5000").tracking_uri == "http://h:5000"
    with pytest.raises(ValueError, match="--registry needs"):
        open_registry(" ")
    with pytest.raises(ValueError, match="model_name"):
        MlflowRegistry(model_name="")
    assert issubclass(RegistryError, RetentiveError)


def test_an_unreachable_server_is_one_clear_error_within_seconds():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{closed.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(RegistryError, match=r"is unreachable .*start the tracking server or pass another --registry"):
        MlflowRegistry(uri, timeout=2).check()
    assert time.monotonic() - start < 5


def test_a_server_that_never_answers_is_given_up_on_after_the_timeout():
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        start = time.monotonic()
        with pytest.raises(RegistryError, match=r"waited at most 1 s"):
            MlflowRegistry(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1).check()
        assert time.monotonic() - start < 5


class _NotMlflow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the handler's name
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_a_server_that_is_not_mlflow_is_named_as_such():
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RegistryError, match="no model registry API there; is it an MLflow tracking server"):
            MlflowRegistry(f"http://127.0.0.1:{server.server_address[1]}", timeout=2).check()
    finally:
        server.shutdown()
        server.server_close()


def test_without_the_extra_the_check_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(RegistryError, match=r"pip install 'retentive\[mlflow\]'"):
        MlflowRegistry("http://127.0.0.1:1").check()


def test_the_registry_package_imports_neither_mlflow_nor_torch():
    probe = (
        "import sys, retentive.registry as r\n"
        "r.open_registry('http://h:1', model_name='m'); r.MlflowRegistry\n"
        "print(sorted(m for m in ('mlflow', 'torch', 'pytorch_lightning') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
