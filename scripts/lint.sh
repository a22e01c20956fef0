#!/usr/bin/env bash
# The style and type gate, exactly as CI (.ci/run) runs it: ruff's lint rules and its format check over
# the whole tree, then mypy over retentive/, all configured in pyproject.toml. `ruff format .` fixes
# what the format check finds. Needs the dev extra (bash scripts/setup.sh dev).
#   bash scripts/lint.sh             with .venv/bin (or $PYTHON's folder: PYTHON=/path/to/python)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(dirname "${PYTHON:-.venv/bin/python}")"
"$bin/ruff" check .
"$bin/ruff" format --check .
"$bin/mypy"
