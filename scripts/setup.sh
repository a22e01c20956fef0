#!/usr/bin/env bash
# Create .venv (if missing) and install retentive with the pinned, tested versions.
#   bash scripts/setup.sh        the library and its runtime dependencies
#   bash scripts/setup.sh dev    plus the test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
extra=""
[ "${1:-}" = "dev" ] && extra="[dev]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".${extra}"
echo "retentive $(.venv/bin/retentive --version | cut -d' ' -f2) is installed in .venv: run 'source .venv/bin/activate' to put retentive and tensorboard on your PATH (or call .venv/bin/retentive)"
