"""The README's first command in full, as a newcomer runs it: a fresh clone with no ../shared, MNIST
fetched from a local mirror on 127.0.0.1 through RETENTIVE_MNIST_MIRROR, the whole demo (every
sample of every chunk). tests/e2e/test_readme_first_command.py runs the same with --samples-per-chunk 200.

    python benchmarks/first_run.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from first_run_support import build_mirror, fresh_clone, newcomer_env, readme_first_command, run_retentive, serve  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        parent = Path(tmp)
        clone = fresh_clone(parent)
        args = readme_first_command(clone)
        with serve(build_mirror(parent / "mirror")) as url:
            start = time.perf_counter()
            result = run_retentive(clone, args, newcomer_env(parent / "home", url), timeout=1800)
            seconds = time.perf_counter() - start
        print(result.stdout)
        print(result.stderr, file=sys.stderr)
        print(f"retentive {' '.join(args)} on a fresh clone: exit {result.returncode} in {seconds:.1f} s")
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
