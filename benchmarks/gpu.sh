#!/usr/bin/env bash
# GPU benchmark, prepared for one call of at most ~8 minutes on one H100/H200:
# a Llama-3-8B-shaped model with random weights (bf16, saved once to local disk), ours vs the seed's
# TRL recipe (SFTTrainer + peft LoRA, full-sequence loss), bf16 LoRA, then 4-bit (nf4) if
# bitsandbytes imports, then prediction (label-token head vs generate). Tables go to $OUT.
#
#   bash benchmarks/gpu.sh                 # on the GPU machine; $OUT must be set (else ./gpu-results)
#   bash benchmarks/gpu.sh --cpu-smoke     # here, on CPU: same code path, toy depth/width, Llama-3 vocab
#
# Packages the GPU image lacks (trl, datasets, bitsandbytes and their missing needs: dill, multiprocess)
# travel as wheels in .whl/ (see /work/.library/device/README.md); this script installs them if present.
# Knobs (environment): GPU_LAYERS (default 32 = all), GPU_STEPS (6), GPU_MICRO_BATCH (4),
# GPU_ACCUMULATE (6, the seed's), GPU_LENGTH_SCALE (3, ~400-token rows), GPU_PREDICT_ROWS (300).
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
OUT="${OUT:-$PWD/gpu-results}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error HF_HUB_OFFLINE=1
export MATHVERIFY_BENCH_CACHE="${MATHVERIFY_BENCH_CACHE:-/tmp/mathverify-bench}"
PY="${PYTHON:-python3}"

if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"

if [ "$SMOKE" = 1 ]; then
  COMMON=(--shape tiny-8b-vocab --device cpu --dtype float32)
  TRAIN=(--steps 3 --micro-batch 2 --accumulate 2 --length-scale 1)
  PRED=(--rows 12 --length-scale 1)
  QUANTS=(none)
else
  COMMON=(--shape llama3-8b --device cuda --dtype bfloat16 --layers "${GPU_LAYERS:-32}")
  TRAIN=(--steps "${GPU_STEPS:-6}" --micro-batch "${GPU_MICRO_BATCH:-4}" --accumulate "${GPU_ACCUMULATE:-6}"
         --length-scale "${GPU_LENGTH_SCALE:-3}")
  PRED=(--rows "${GPU_PREDICT_ROWS:-300}" --length-scale "${GPU_LENGTH_SCALE:-3}" --unpadded-rows 60)
  QUANTS=(none)
  "$PY" -c "import bitsandbytes" 2>/dev/null && QUANTS+=(4bit)
fi

{
  echo "# mathverify GPU benchmark"
  date -u '+%Y-%m-%d %H:%M UTC'
  (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi")
  "$PY" -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
  "$PY" -c "import trl; print('trl', trl.__version__)" 2>&1 | tail -1
} > "$OUT/report.md"

STATUS=0
DEV=cpu; DT=float32; MM=1024
[ "$SMOKE" = 0 ] && DEV=cuda && DT=bfloat16 && MM=8192
"$PY" benchmarks/bench_matmul.py --device "$DEV" --dtype "$DT" --size "$MM" --seconds 2 --json "$OUT/matmul.json" \
  >> "$OUT/report.md" 2> "$OUT/matmul.err" || STATUS=1
PEAK=$("$PY" -c "import json; print(json.load(open('$OUT/matmul.json'))['best_gflops'])" 2>/dev/null || echo 0)

for Q in "${QUANTS[@]}"; do
  echo -e "\n## Training, quantization $Q\n" >> "$OUT/report.md"
  "$PY" benchmarks/bench_train.py "${COMMON[@]}" "${TRAIN[@]}" --quantization "$Q" --profile \
    --matmul-peak-gflops "$PEAK" --json "$OUT/train_$Q.json" >> "$OUT/report.md" 2> "$OUT/train_$Q.err" || STATUS=1
done
echo -e "\n## Prediction\n" >> "$OUT/report.md"
"$PY" benchmarks/bench_predict.py "${COMMON[@]}" "${PRED[@]}" --json "$OUT/predict.json" \
  >> "$OUT/report.md" 2> "$OUT/predict.err" || STATUS=1
cat "$OUT/report.md"
exit $STATUS
