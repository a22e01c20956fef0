"""Smoke test of benchmarks/concurrency.py: two writers updating one local state folder in place
and a reader loading it, for 10 s, real processes, must lose no update, never read a mix of two
versions, never get a false "modified or truncated" error, and leave a state that loads.

Local only: the s3:// run (moto's server plus three more worker processes) takes about a minute
on two cores; run it with ``python benchmarks/concurrency.py --where s3``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_concurrent_in_place_writers_and_a_reader_lose_and_mix_nothing(tmp_path):
    output = tmp_path / "concurrency.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "concurrency.py"),
            "--writers",
            "2",
            "--readers",
            "1",
            "--seconds",
            "10",
            "--where",
            "local",
            "--grace",
            "60",
            "--scratch",
            str(tmp_path),
            "--output",
            str(output),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    local = json.loads(output.read_text())["locations"]["local"]
    figures = {
        key: local[key]
        for key in (
            "commits",
            "conflicts",
            "locked_retries",
            "failures",
            "lost_updates",
            "duplicate_updates_done",
            "reads",
            "mixed_reads",
            "false_tamper_errors",
            "final_loads",
            "final_error",
            "final_mismatches",
        )
    }
    assert local["commits"] > 0 and local["reads"] > 0, f"the run did nothing: {figures}"
    broken = {
        "final state does not load": not local["final_loads"] and local["final_error"],
        "final state mixes versions": local["final_mismatches"],
        "lost updates": local["lost_updates"],
        "commits writing an updates_done another commit wrote": local["duplicate_updates_done"],
        "updates_done gained minus commits": local["updates_done_gain"] is not None
        and local["updates_done_gain"] - local["commits"],
        "mixed reads": local["mixed_reads"] and (local["mixed_reads"], local["mixed_examples"]),
        "false tamper errors": local["false_tamper_errors"]
        and (local["false_tamper_errors"], local["false_tamper_messages"]),
    }
    assert not {k: v for k, v in broken.items() if v}, f"{ {k: v for k, v in broken.items() if v} } in {figures}"
