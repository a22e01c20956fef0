"""Run in a fresh process: rebuild each method's updater from its state folder and compare with
a snapshot; then run one more update and compare that with the snapshot of the same update done
in the first process.

Usage: python tests/support/methods_state_worker.py JOBS.json — JOBS is a list of
``{"name", "folder", "expected", "next_chunk", "expected_next"}``; prints one JSON object
name -> differences.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from er_family_support import differences, snapshot  # noqa: E402
from methods_support import build  # noqa: E402


def main(jobs_path: str) -> int:
    torch.set_num_threads(1)
    results = {}
    for job in json.loads(Path(jobs_path).read_text()):
        updater = build(job["name"], input_state_folder=job["folder"])
        found = differences(torch.load(job["expected"], weights_only=True), snapshot(updater))
        inputs, targets = torch.load(job["next_chunk"], weights_only=True)
        from retentive.data import TensorChunk

        updater.update(TensorChunk(inputs, targets), task_id=job["next_task"])
        found += differences(torch.load(job["expected_next"], weights_only=True), snapshot(updater))
        results[job["name"]] = found
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
