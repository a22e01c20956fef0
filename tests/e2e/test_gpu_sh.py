"""benchmarks/gpu.sh in its smoke mode on the CPU: every part runs (the card, the step time of
retentive beside the plain loop on ResNet-18, the five Seq-CIFAR-10 cells) and prints its figures.

No GPU is lent to this project's sessions, so this is what checks the script before a GPU run:
the same parts and commands as on the card, on a tiny workload (``GPU_SH_SMOKE=1``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_sh_smoke_prints_every_figure_on_the_cpu(tmp_path):
    env = {
        **os.environ,
        "GPU_SH_SMOKE": "1",
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--device", "cpu", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "card: none (device cpu" in out
    assert "device cpu, precision 32, timed in step by step" in out  # gpu.sh's --device reached step_speed.py
    for method in ("ER", "DER++"):
        assert re.search(
            rf"^{re.escape(method)}\s+plain loop [\d.]+ ms \| retentive steady step [\d.]+ ms \([\d.]+x\)", out, re.M
        )
    runs = json.loads((tmp_path / "der_cifar_gpu.json").read_text())
    assert sorted(r["method"] for r in runs) == ["der", "derpp", "er", "joint", "sgd"]
    for run in runs:
        assert run["device"] == "cpu" and run["memory"] in (None, 500) and len(run["per_task"]) == 5
        # masking to the task's classes can only turn a wrong prediction right, never the reverse
        assert all(t >= c for t, c in zip(run["per_task_task_il"], run["per_task"], strict=True))
        assert 0.0 <= run["accuracy"] <= 100.0
    table = out.split("cells that finished", 1)[1]
    for label in ("| SGD |", "| JOINT |", "| ER | 500 |", "| DER | 500 |", "| DER++ | 500 |"):
        assert label in table
    assert "status 0" in out.splitlines()[-1]
