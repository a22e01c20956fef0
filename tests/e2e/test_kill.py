"""The kill test in reduced form: SIGKILL an update during training and during the save; the input
stays byte-identical, the output is absent or complete, and resuming ends in the clean run's state.
The full 30-kill run is ``python benchmarks/kill_test.py`` (docs/benchmarks/reliability.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from script_modules import load_script

pytestmark = pytest.mark.slow


def _kill_test_module():
    return load_script("benchmarks/kill_test.py", "retentive_kill_test")


def test_sigkill_during_training_and_save_never_corrupts(tmp_path, mnist_train):
    kill_test = _kill_test_module()
    counts = kill_test.run_kill_test(
        kills=4, seed=1, workdir=tmp_path, samples=400, epochs=3, memory_size=400, mnist=mnist_train
    )
    assert counts["problems"] == []
    assert counts["corrupt"] == 0 and counts["input_modified"] == 0
    assert counts["during_training"] == 2 and counts["during_save"] == 2
    assert counts["output_absent"] + counts["output_complete"] == 4
    assert counts["resumed_identical"] == counts["output_absent"]  # every interrupted update finished identically
    assert counts["resume_failed"] == 0 and counts["leftovers"] == 0


def test_sigkill_during_an_in_place_swap_leaves_the_old_or_the_new_state(tmp_path, mnist_train):
    """Two random moments of the save, and one self-kill after each step of the swap."""
    kill_test = _kill_test_module()
    kills = 2 + 2 * len(kill_test.SWAP_STEPS)
    counts = kill_test.run_inplace_kill_test(
        kills=kills, seed=2, workdir=tmp_path, samples=300, epochs=1, memory_size=300, mnist=mnist_train
    )
    assert counts["problems"] == [] and counts["corrupt"] == 0
    assert set(counts["swap_step"]) == set(kill_test.SWAP_STEPS)
    # staged: the old state; every later step: the new one (and rollback restores the old)
    assert counts["new_state"] >= 4 and counts["old_state"] >= 1
    assert counts["rolled_back_identical"] == counts["new_state"]
    assert counts["no_previous_refused"] == counts["old_state"]


def test_sigint_and_sigterm_after_each_step_of_an_in_place_swap_never_split_the_commit(tmp_path, mnist_train):
    """Issue 22, finding 3: a SIGINT after the exchange used to delete the old state (then in the
    staging folder), and the KeyboardInterrupt did not say whether the update committed."""
    import signal

    kill_test = _kill_test_module()
    for signum in (signal.SIGINT, signal.SIGTERM):
        counts = kill_test.run_inplace_signal_test(
            signum, tmp_path / signal.Signals(signum).name, samples=200, memory_size=200, mnist=mnist_train
        )
        assert counts["problems"] == [] and counts["corrupt"] == 0, counts
        assert counts["old_state"] == ["staged"]  # before the exchange: interrupted, nothing committed
        assert counts["new_state"] == list(kill_test.SWAP_STEPS[1:])  # after it: the commit completed first
        assert counts["rolled_back_identical"] == len(kill_test.SWAP_STEPS) - 1  # the old state was kept
        if signum == signal.SIGINT:
            assert counts["said_committed"] == 4 and counts["said_not_committed"] == 1 and counts["debris"] == 0


def test_sigkill_at_any_moment_of_a_promote_leaves_the_old_or_the_new_current_version(tmp_path):
    """Random moments of a model home's promote, and a self-kill after each step of its commit."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from promote_kill import PROMOTE_STEPS, run_promote_kill_test

    kills = 4 * len(PROMOTE_STEPS)
    counts = run_promote_kill_test(kills, seed=3, workdir=tmp_path, size=50_000)
    assert counts["problems"] == [] and counts["old"] + counts["new"] == kills, counts
    # before the rename: the old version; from the rename on: the new one, whole
    assert set(counts["steps"]["verified"]) == set(counts["steps"]["written"]) == {"old"}
    assert set(counts["steps"]["renamed"]) == set(counts["steps"]["synced"]) == {"new"}
