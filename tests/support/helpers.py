"""Helpers for building updaters in tests with quiet, fast defaults, and for comparing their states."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch

QUIET: dict[str, Any] = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, max_epochs=1)


ROOT = Path(__file__).resolve().parents[2]


def run_support_script(script: str, *args: str, cwd: Path, timeout: float) -> None:
    """Run ``tests/support/<script>`` (a multi-process job: DDP ranks it starts itself) in a fresh
    Python with one torch thread per process, and fail with the tail of its output unless it exits 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, str(ROOT / "tests" / "support" / script), *args]
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def sgd(lr: float = 0.05):
    return partial(torch.optim.SGD, lr=lr)


def assert_same_tree(a, b, where: str) -> None:
    """Bitwise equality of nested tensors and values; a failure names the path that differs."""
    if torch.is_tensor(a):
        same = torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        same = isinstance(b, dict) and set(a) == set(b)
        if same:
            for key in a:
                assert_same_tree(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        same = isinstance(b, (list, tuple)) and len(a) == len(b)
        if same:
            for i, (x, y) in enumerate(zip(a, b)):
                assert_same_tree(x, y, f"{where}[{i}]")
    else:
        same = a == b
    if not same:
        pytest.fail(f"{where} differs")
