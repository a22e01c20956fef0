"""The gate kill test in reduced form: SIGKILL a gated update, anywhere and during gate-and-promote,
for a good chunk and a harmful one; the home always serves exactly the old or the new champion.
The full run is ``python benchmarks/gate_kill.py`` (docs/benchmarks/reliability.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_sigkill_at_any_moment_of_gate_and_promote_leaves_the_old_or_the_new_champion(tmp_path, mnist_available):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from gate_kill import run_gate_kill_test

    counts = run_gate_kill_test(kills=8, seed=1, workdir=tmp_path)
    assert counts["problems"] == [], counts
    outcomes = counts["outcomes"]
    assert sum(len(v) for v in outcomes.values()) == 8
    harmful = [o for key, values in outcomes.items() if key.startswith("harmful") for o in values]
    assert harmful and all(o.startswith("old") for o in harmful)  # a rejected candidate never serves
