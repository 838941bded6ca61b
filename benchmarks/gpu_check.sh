#!/usr/bin/env bash
# The GPU check, in one call of at most ~8 minutes on a lent GPU machine (a fresh copy of the repo, PyTorch with
# CUDA installed system-wide, maybe no network): nothing here downloads anything.
#
#   bash benchmarks/gpu_check.sh            # PYTHON=/path/to/python to choose the interpreter (default python3)
#
# Steps, each under its own `timeout` and all within GPU_CHECK_BUDGET_S (default 470 s):
#   1. PyTorch CUDA baselines (benchmarks/gpu.py: torch-cuda FP32 with TF32 off, FP16, FP16 channels_last),
#      recorded first so that a later failure still leaves them
#   2. the gpu/tensorrt-marked tests (pytest -m "gpu or tensorrt")
#   3. onnxruntime's CUDA EP, when this onnxruntime has it
#   4. TensorRT FP16 and INT8 engines, when tensorrt imports
# Results: benchmarks/results/resnet50_gpu_<date>_<gpu>_<step>.{json,md,png} and gpu_check_<date>_<gpu>.log.
# Exit status: 0 all ran and passed; 1 a step failed or timed out; 2 refused (no Python/PyTorch/CUDA GPU);
# 3 everything that ran passed but TensorRT is not importable, so its tests and benchmarks did not run.
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
SIZES=${GPU_CHECK_BATCH_SIZES:-1,32}
OUT=${GPU_CHECK_OUT:-benchmarks/results}
export PYTHONUNBUFFERED=1

refuse() {
    echo "error: $*" >&2
    exit 2
}

# -- refuse fast on a machine that cannot run any of it (writes nothing) --------------------------------------
command -v "$PY" >/dev/null || refuse "no Python interpreter '$PY'; set PYTHON=/path/to/python"
probe=$(timeout 90 "$PY" -c '
import sys
try:
    import torch
except ImportError as e:
    print(f"PyTorch is not importable with {sys.executable} ({e})"); sys.exit(4)
if not torch.cuda.is_available():
    print(f"no CUDA GPU visible to PyTorch {torch.__version__} ({sys.executable})"); sys.exit(5)
print(torch.cuda.get_device_name(0))
' 2>&1)
case $? in
    0) gpu_name=$(printf '%s\n' "$probe" | tail -n 1) ;;
    124) refuse "probing PyTorch and CUDA took more than 90 s; check the driver (nvidia-smi)" ;;
    *) refuse "$(printf '%s\n' "$probe" | tail -n 1); benchmarks/gpu_check.sh needs a GPU machine with PyTorch CUDA" ;;
esac

slug=$(printf '%s' "$gpu_name" | tr -cs 'A-Za-z0-9' '-' | sed 's/^-//; s/-$//' | tr 'A-Z' 'a-z')
mkdir -p "$OUT"
LOG="$OUT/gpu_check_$(date -u +%Y-%m-%d)_${slug}.log"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rtresnet-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

failed=0
trt_missing=0

# step NAME SECONDS CMD...: run CMD under a timeout capped by what is left of the budget
step() {
    local name=$1 limit=$2 left=$((BUDGET - SECONDS)) rc
    shift 2
    if ((left < 20)); then
        echo "== $name: not run, the ${BUDGET} s budget is spent"
        failed=1
        return
    fi
    ((limit > left)) && limit=$left
    echo "== $name (timeout ${limit} s, ${SECONDS} s elapsed)"
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    if ((rc == 124 || rc == 137)); then
        echo "== $name: TIMED OUT after ${limit} s"
        failed=1
    elif ((rc != 0)); then
        echo "== $name: FAILED (exit $rc)"
        failed=1
    else
        echo "== $name: ok"
    fi
}

importable() {
    "$PY" -c "import $1" >/dev/null 2>&1
}

main() {
    echo "gpu_check on $gpu_name, $(date -u +%Y-%m-%dT%H:%M:%SZ), python $PY, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

    if ! importable rtresnet; then
        echo "rtresnet is not importable: pip install -e . --no-deps (no build isolation: there may be no network)"
        timeout 120 "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . ||
            echo "pip install failed: using the checkout through PYTHONPATH"
        importable rtresnet || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi
    local m have=""
    for m in rtresnet onnx onnxruntime tensorrt pytest rich click matplotlib; do
        importable "$m" && have+=" $m" || have+=" (no $m)"
    done
    echo "importable:$have"

    local gpu_py=("$PY" benchmarks/gpu.py --batch-sizes "$SIZES" --duration-s 1 --work-dir "$WORK" --out "$OUT")
    step "PyTorch CUDA baseline" 150 "${gpu_py[@]}" --tag torch --backends torch-cuda,torch-cuda-fp16,torch-cuda-fp16-cl

    if importable pytest; then
        local files
        files=$(grep -lE 'pytest\.mark\.(gpu|tensorrt)' tests/test_*.py | tr '\n' ' ')
        # shellcheck disable=SC2086 # one word per test file
        step "GPU and TensorRT tests" 150 "$PY" -m pytest -q -p no:cacheprovider -m "gpu or tensorrt" $files
    else
        echo "== GPU and TensorRT tests: not run, pytest is not importable"
        failed=1
    fi

    if "$PY" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" \
        >/dev/null 2>&1; then
        step "onnxruntime CUDA" 90 "${gpu_py[@]}" --tag onnxruntime --backends torch-cuda,onnxruntime-cuda,onnxruntime-cuda-fp16
    else
        echo "== onnxruntime CUDA: not present here (onnxruntime without CUDAExecutionProvider): skipped"
    fi

    local trt_error
    if trt_error=$("$PY" -c "import tensorrt" 2>&1); then
        step "TensorRT" 240 "${gpu_py[@]}" --tag tensorrt --backends torch-cuda,tensorrt-fp16,tensorrt-int8
    else
        echo "== TensorRT not importable ($(printf '%s\n' "$trt_error" | tail -n 1)): its tests skipped, no TensorRT benchmark"
        trt_missing=1
    fi

    echo "results in $OUT (this log: $LOG), ${SECONDS} s in all"
    if ((failed)); then
        echo "gpu_check: FAILED (see the steps marked FAILED / TIMED OUT / not run above)"
        return 1
    fi
    if ((trt_missing)); then
        echo "gpu_check: incomplete: TensorRT not importable (everything else passed)"
        return 3
    fi
    echo "gpu_check: passed"
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
