#!/usr/bin/env bash
# Every GPU figure of issue 25 in at most 9 minutes on one GPU (sized for an H100), printed as it comes:
#   1. the card (name, memory, driver) and the software;
#   2. the step time of retentive's ER and DER++ against a plain PyTorch loop doing the same math,
#      side by side on the device (benchmarks/step_speed.py: ResNet-18 nf=64, CIFAR-sized batches of
#      32 + 32, bf16-mixed on both sides, each side timed over synchronised windows of steps);
#   3. the Seq-CIFAR-10 cells that fit (benchmarks/der_cifar.py, memory 500, seed 0, nf=64,
#      bf16-mixed), at a REDUCED number of epochs per task ($GPU_SH_EPOCHS, default 5; the paper's
#      protocol is 50, about 78,000 steps per run, which alone exceeds the budget), most wanted first:
#      DER++, ER, fine-tuning, joint, DER. A cell that does not finish in its part's time is not printed.
# Each part has its own timeout, cut further to what is left of the overall budget ($GPU_SH_BUDGET,
# default 520 s, leaving room for the closing table), so the script ends within 9 minutes whatever a part does.
#
#   bash benchmarks/gpu.sh [--device cuda] [--out DIR]      # on the GPU machine
#   GPU_SH_SMOKE=1 bash benchmarks/gpu.sh --device cpu      # the same parts on a tiny workload (CPU check)
#
# Needs CIFAR-10 where retentive.data.cifar10 looks (e.g. RETENTIVE_DATA=FOLDER holding
# cifar10-images.tar.gz; unset, the checkout's own shared/data is used where it has one); checked first
# so a missing copy costs no GPU time. $PYTHON picks the interpreter (default python, else python3).
# Output is unbuffered, so what a part printed before its time limit stopped it is kept.
set -uo pipefail

DEVICE=cuda
OUT_DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=${2:?--device needs a value}; shift 2 ;;
        --out) OUT_DIR=${2:?--out needs a folder}; shift 2 ;;
        *) echo "usage: bash benchmarks/gpu.sh [--device cuda|cuda:N|cpu] [--out DIR]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-$(command -v python || command -v python3 || echo python)}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the scripts import this checkout's retentive, installed or not
if [ -z "${RETENTIVE_DATA:-}" ] && [ -d shared/data ]; then
    export RETENTIVE_DATA=$PWD/shared/data  # retentive.data also looks in $RETENTIVE_DATA/cifar10
fi
SMOKE=${GPU_SH_SMOKE:-0}
EPOCHS=${GPU_SH_EPOCHS:-5}
SCALE=1  # the parts' limits are multiplied by it: a smoke run on a shared CPU checks function, not time
if [ "$SMOKE" = 1 ]; then
    SCALE=4
    STEP_ARGS=(--nf 4 --rounds 1 --steps 4 --precision 32)
    CIFAR_ARGS=(--nf 4 --epochs 1 --subset 8 --test-subset 4 --precision 32)
    OUT_DIR=${OUT_DIR:-$(mktemp -d)}
else
    STEP_ARGS=(--nf 64 --rounds 3 --steps 120 --precision bf16-mixed)  # the cells' precision, both sides
    CIFAR_ARGS=(--nf 64 --epochs "$EPOCHS" --precision bf16-mixed --channels-last --threads 8)
    OUT_DIR=${OUT_DIR:-benchmarks/results/gpu}
fi
BUDGET=${GPU_SH_BUDGET:-$((520 * SCALE))}
mkdir -p "$OUT_DIR" || exit 2
RESULTS="$OUT_DIR/der_cifar_gpu.json"
START=$SECONDS
STATUS=0

# part NAME SECONDS COMMAND...: run COMMAND with at most SECONDS (less if the budget is nearly spent).
part() {
    local name=$1 limit=$(($2 * SCALE))
    shift 2
    local left=$((BUDGET - (SECONDS - START) - 5))
    [ "$left" -lt "$limit" ] && limit=$left
    echo "== $name (at most ${limit} s)"
    if [ "$limit" -le 0 ]; then
        echo "== $name: skipped, the ${BUDGET} s budget is spent"
        STATUS=1
        return
    fi
    local begun=$SECONDS
    timeout --kill-after=5 "$limit" "$@"
    local rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "== $name: stopped at its ${limit} s limit (what finished is printed above)"
        STATUS=1
    elif [ "$rc" -ne 0 ]; then
        echo "== $name: failed with exit status $rc"
        STATUS=1
    fi
    echo "== $name took $((SECONDS - begun)) s"
}

part "data" 120 "$PY" -c "from retentive.data import cifar10; print('CIFAR-10:', len(cifar10(train=True)), 'train,', len(cifar10(train=False)), 'test images')"
if [ "$STATUS" -ne 0 ]; then
    echo "gpu.sh: CIFAR-10 is not readable here; nothing else is run" >&2
    exit 1
fi
part "card" 30 "$PY" -c "
import platform, sys, torch
device = torch.device('$DEVICE')
if device.type == 'cuda' and not torch.cuda.is_available():
    sys.exit(f'no CUDA device is visible to torch {torch.__version__} (built for CUDA {torch.version.cuda})')
if device.type == 'cuda':
    props = torch.cuda.get_device_properties(device)
    print(f'card: {props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability {props.major}.{props.minor}, CUDA {torch.version.cuda}')
else:
    print(f'card: none (device {device}, CPU {platform.processor() or platform.machine()})')
print(f'torch {torch.__version__}, python {platform.python_version()}')
"
if [ "$STATUS" -ne 0 ]; then
    echo "gpu.sh: the device $DEVICE cannot be used here; nothing else is run" >&2
    exit 1
fi
if [ "$SMOKE" != 1 ] && command -v nvidia-smi > /dev/null; then
    timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
fi
part "step time: retentive vs a plain PyTorch loop (ResNet-18)" 150 \
    "$PY" benchmarks/step_speed.py --model resnet18 --device "$DEVICE" "${STEP_ARGS[@]}"
part "Seq-CIFAR-10 cells (memory 500, seed 0, ${CIFAR_ARGS[*]})" 600 \
    "$PY" benchmarks/der_cifar.py --device "$DEVICE" --seeds 0 --memory 500 \
    --methods derpp er sgd joint der "${CIFAR_ARGS[@]}" --out "$RESULTS"
echo "== Seq-CIFAR-10 cells that finished ($RESULTS; reduced protocol: compare with the paper's 50 epochs only as a trend)"
"$PY" benchmarks/der_cifar.py --report --out "$RESULTS"
echo "== gpu.sh done in $((SECONDS - START)) s (budget ${BUDGET} s), status $STATUS"
exit "$STATUS"
