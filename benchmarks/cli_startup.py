"""How long `retentive --help`, `retentive update --help` and a usage error take (median of N runs).

    python benchmarks/cli_startup.py [--runs 5]

Each run is a new process of the installed `retentive` entry point (the venv's script beside this
interpreter), timed from start to exit, as a user at a shell meets it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["update", "--help"], ["updte"])


def time_command(script: Path, args: list[str], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(script), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    script = Path(sys.executable).with_name("retentive")
    time_command(script, ["--version"], 1)  # warm the file cache
    print("| command | median (s) | runs (s) |\n|---|---|---|")
    for command in COMMANDS:
        runs = time_command(script, command, args.runs)
        print(
            f"| `retentive {' '.join(command)}` | {statistics.median(runs):.3f} | {', '.join(f'{r:.3f}' for r in runs)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
