"""benchmarks/deletion_influence.py on a tiny real-MNIST setting: every condition measured, the
deletion alone leaving the model exactly as it was, the refit and the rerun changing it."""

from __future__ import annotations

import json

import pytest
from script_modules import load_script

pytestmark = pytest.mark.slow


def test_the_benchmark_measures_every_condition_on_a_tiny_setting(tmp_path, mnist_available):
    bench = load_script("benchmarks/deletion_influence.py", "retentive_deletion_influence")
    out = tmp_path / "influence.json"
    tiny = ["--seeds", "0", "--per-class", "40", "--heldout-per-class", "40", "--memory", "40", "--delete", "8"]
    assert bench.main([*tiny, "--epochs", "1", "--refit-epochs", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    run = result["runs"][0]
    assert list(run["conditions"]) == ["before", "deleted", "refit_2", "rerun", "retrain"]
    assert run["set_sizes"] == {"deleted": 8, "never_seen": 32, "trained_not_kept": 32, "memory": 32}
    before, deleted = run["conditions"]["before"], run["conditions"]["deleted"]
    assert deleted == before  # a deletion changes the memory, not the weights
    for changed in ("refit_2", "rerun", "retrain"):
        assert run["conditions"][changed]["deleted"] != before["deleted"]
    summary = result["summary"]["refit_2"]
    assert summary["gap"]["mean"] == pytest.approx(run["conditions"]["refit_2"]["gap"], abs=1e-4)
    assert 0.0 <= summary["auc"]["mean"] <= 1.0 and summary["gap"]["sd"] == 0.0
