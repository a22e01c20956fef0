"""Run in a fresh process: the second update of each policy's run, from the first one's folder.

Usage: python tests/support/selection_worker.py JOBS.json — a list of ``{"name", "input", "output"}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from selection_support import build, chunks  # noqa: E402


def main(jobs_path: str) -> int:
    torch.set_num_threads(1)
    second = chunks()[1]
    for job in json.loads(Path(jobs_path).read_text()):
        build(job["name"], Path(job["input"]), Path(job["output"])).update(second, task_id=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
