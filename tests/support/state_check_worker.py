"""Run in a fresh process: rebuild each updater from its state folder and compare with a snapshot.

Usage: python tests/support/state_check_worker.py JOBS.json  — JOBS is a list of
``{"name": ..., "folder": ..., "expected": ...}``; prints one JSON object name -> differences.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from er_family_support import build, differences, snapshot  # noqa: E402


def main(jobs_path: str) -> int:
    torch.set_num_threads(1)
    results = {}
    for job in json.loads(Path(jobs_path).read_text()):
        updater = build(job["name"], input_state_folder=job["folder"])
        expected = torch.load(job["expected"], weights_only=True)
        results[job["name"]] = differences(expected, snapshot(updater))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
