#!/usr/bin/env bash
# `make demo`: the main job on the CPU, end to end (210 s on 2 idle Zen 1 EPYC cores, 349 s with a fresh .venv):
#   the bundled digits ResNet-18 -> verified ONNX -> FP32 / FP16 / INT8 onnxruntime engines (INT8 calibrated on
#   real digits) -> predict through the INT8 engine -> bench with accuracy against PyTorch eager FP32;
#   then ResNet-50 at 224x224 batch-1 latency; then the INT8 engine served by Triton (rtresnet serve), answering
#   and load-tested at concurrency 1 and 8, with and without dynamic batching. Reports land in reports/.
set -euo pipefail
OUT=${DEMO_OUT:-reports}
ENG=${DEMO_ENGINES:-engines}
mkdir -p "$OUT" "$ENG"
step() { printf '\n== [%ds] %s\n' "$SECONDS" "$*"; }  # seconds since the demo started

step "1/9 environment: rtresnet doctor"
rtresnet doctor

step "2/9 model zoo: rtresnet models"
rtresnet models

step "3/9 digits ResNet-18 (1 input channel, 10 classes): train once, cached in \$RTRESNET_HOME; 8 held-out digits as PNG"
CKPT=$(rtresnet digits --images "$OUT/digits" --count 8 --labels "$OUT/digits_labels.txt")
echo "checkpoint: $CKPT"

step "4/9 export: verified FP32 ONNX with preprocessing and labels in its metadata"
rtresnet export --arch resnet18 --weights "$CKPT" --in-channels 1 --num-classes 10 --input-size 32 \
  --resize 32 --mean 0.5 --std 0.5 --labels "$OUT/digits_labels.txt" --max-batch 32 -o "$ENG/digits.onnx"

step "5/9 build: FP32, FP16 and INT8 onnxruntime engines (INT8 calibrated on the digits train split)"
rtresnet build "$ENG/digits.onnx" --backend onnxruntime -o "$ENG/digits_fp32_cpu.onnx"
rtresnet build "$ENG/digits.onnx" --backend onnxruntime --fp16 -o "$ENG/digits_fp16_cpu.onnx"
rtresnet build "$ENG/digits.onnx" --backend onnxruntime --int8 --calib-data digits -o "$ENG/digits_int8_cpu.onnx"
# --backend auto (the default) on a CPU: every CPU backend installed (onnxruntime, OpenVINO) built from the same
# INT8 ONNX (calibration cached above), timed at batch 1 here, the fastest kept; it prints what it measured.
rtresnet build "$ENG/digits.onnx" --int8 --calib-data digits --max-batch 1 --engine-dir "$ENG"

step "6/9 predict through the INT8 engine (file names carry the true label)"
rtresnet predict "$ENG/digits_int8_cpu.onnx" "$OUT/digits" --topk 3

step "7/9 bench: the three engines vs PyTorch eager FP32 on the 360 held-out digits (gate: top-1 drop <= 1 point)"
rtresnet bench --models "$ENG/digits_fp32_cpu.onnx" "$ENG/digits_fp16_cpu.onnx" "$ENG/digits_int8_cpu.onnx" \
  --weights "$CKPT" --data digits --batch-sizes 1,32 --iters 30 --threads 2 --max-top1-drop 1 \
  --json "$OUT/demo_digits.json" --csv "$OUT/demo_digits.csv" --markdown "$OUT/demo_digits.md" \
  --plot "$OUT/demo_digits.png"

step "8/9 ResNet-50 224x224 latency at batch 1: PyTorch eager FP32 vs onnxruntime FP32 and INT8 engines"
python benchmarks/resnet50_cpu.py --quick --out "$OUT"

step "9/9 serve the INT8 engine on Triton (PyTriton): classify 3 digits through it, load test at concurrency 1 and 8"
python benchmarks/serve_loadtest.py --model "$ENG/digits_int8_cpu.onnx" --requests 200 --out "$OUT" \
  --images $(ls "$OUT"/digits/*.png | head -3)

step "done: reports in $OUT/, engines in $ENG/"
ls "$OUT"
