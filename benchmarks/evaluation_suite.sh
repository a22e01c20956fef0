#!/usr/bin/env bash
# Every figure of docs/benchmarks/scenarios.md (evaluation scenarios and task order), with the DER paper's protocol
# (retentive.benchmarking.methods.PROTOCOLS, memory 500). Usage:
#   PYTHON=.venv/bin/python bash benchmarks/evaluation_suite.sh [OUTPUT_ROOT] [PART ...]
# PART is any of seq domain orders (default: all three). Each part writes OUTPUT_ROOT/PART/.
set -euo pipefail
OUT=${1:-benchmark_output}
shift || true
PARTS=${*:-seq domain orders}
PY=${PYTHON:-python}
for part in $PARTS; do
  case $part in
    seq)     args=(--scenario seq-mnist seq-mnist-til) ;;
    domain)  args=(--scenario perm-mnist rot-mnist) ;;
    orders)  args=(--scenario seq-mnist --orders given easy-hard hard-easy random) ;;
    *) echo "unknown part $part (expected seq, domain, orders)" >&2; exit 2 ;;
  esac
  "$PY" -m retentive.cli benchmark "${args[@]}" --method fine-tuning er der++ --seeds 0 1 2 \
    --threads 1 --markdown --output "$OUT/$part"
done
