"""Runs several ``retentive update`` commands one after another in one new process, for
tests/e2e/test_update_command.py: each resumes from a state folder that another process wrote,
and the process's start-up (importing torch and Lightning) is paid once, not once per command.

    python tests/support/update_batch_worker.py JOBS.json RESULTS.json

JOBS.json: ``[{"args": [...], "cwd": "..."}]``, the arguments after ``retentive update``;
RESULTS.json: ``[{"returncode": ..., "stdout": ..., "stderr": ...}]`` in the same order.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from typing import Any

from retentive.cli import main


def run(args: list[str], cwd: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    os.chdir(cwd)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["update", *args])
        except SystemExit as stop:  # argparse's usage errors
            code = stop.code if isinstance(stop.code, int) else 1
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    results = [run(job["args"], job["cwd"]) for job in jobs]
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)
