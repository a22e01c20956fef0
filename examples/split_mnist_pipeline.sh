#!/usr/bin/env bash
# A retraining pipeline in miniature: Split-MNIST arrives as five chunks (digits 0-1, 2-3, ...,
# 8-9) and each chunk is one `retentive update` process that resumes from the state folder the
# previous one wrote, as a scheduler would run them.
#
#   bash examples/split_mnist_pipeline.sh [--config FILE] [--output DIR] [--limit N]
#
#   --config FILE  the update config [configs/der.yaml]; its logger must take save_dir and version
#                  (the shipped TensorBoardLogger does)
#   --output DIR   where chunks, state folders, summaries and TensorBoard logs go [pipeline_output]
#   --limit N      at most N samples per chunk, for a quick run [all: about 12,000 per chunk]
#   $PYTHON        the interpreter with retentive installed [.venv/bin/python, else python3]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONFIG="$ROOT/configs/der.yaml"
OUT="pipeline_output"
LIMIT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG="$2"; shift 2 ;;
    --output) OUT="$2"; shift 2 ;;
    --limit) LIMIT="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | cut -c3-; exit 0 ;;
    *) echo "split_mnist_pipeline.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
if [ -e "$OUT/state" ]; then
  echo "split_mnist_pipeline.sh: $OUT holds an earlier run; remove it or pass --output" >&2
  exit 2
fi
retentive() { "$PYTHON" -m retentive.cli "$@"; }
name="$(basename "$CONFIG" .yaml)"

# 1. The data: ten chunk files (five to train on, five to validate on), as a data team would drop them.
"$PYTHON" "$ROOT/examples/export_split_mnist.py" --output "$OUT/chunks" ${LIMIT:+--limit "$LIMIT"}

# 2. One update per chunk, each in its own process, chained through state folders. Validation is
#    on the test digits of all five chunks, so the accuracy shows what is learned and kept.
for i in 0 1 2 3 4; do
  previous=()
  if [ "$i" -gt 0 ]; then previous=(--input-state "$OUT/state/chunk_$((i - 1))"); fi
  retentive update --config "$CONFIG" \
    --data "$OUT/chunks/train/chunk_$i.npz" \
    --val-data "$OUT/chunks/test" \
    ${previous[@]+"${previous[@]}"} \
    --output-state "$OUT/state/chunk_$i" \
    --task-id "$i" \
    --set logger.init_args.save_dir="$OUT/tensorboard" \
    --set logger.init_args.version="chunk_$i" \
    --summary "$OUT/summaries/chunk_$i.json" \
    --threads 1
done

# 3. The logs: one TensorBoard run per update; the step axis continues across them.
echo
echo "state after the last chunk: $OUT/state/chunk_4"
echo "TensorBoard logs: $OUT/tensorboard/$name"
echo "open them with:   tensorboard --logdir $OUT/tensorboard   (then http://localhost:6006)"
