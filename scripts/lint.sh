#!/usr/bin/env bash
# The style and type gate, exactly as CI (.ci/run) runs it: ruff's lint rules, then mypy, both
# configured in pyproject.toml. Needs the dev extra (bash scripts/setup.sh dev).
#   bash scripts/lint.sh             with .venv/bin (or $PYTHON's folder: PYTHON=/path/to/python)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(dirname "${PYTHON:-.venv/bin/python}")"
"$bin/ruff" check retentive benchmarks examples
"$bin/mypy"
