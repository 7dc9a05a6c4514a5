#!/usr/bin/env bash
# The memory check of issue 31, prepared for one call on one GPU (H100/H200), results in $OUT:
#   1. bench_memory.py on the T4 config at its full 1,024-token rows with the allocator capped at
#      14.5 GiB (what a T4 leaves), beside its CPU-counted prediction; then the QLoRA config at 2,048;
#   2. gpu_configs.py: every shipped GPU config through `mathverify fit` (GPU_STEPS, default 10) and
#      `predict` on rows that fill max_length, then a kill -9 resume on CUDA.
#   bash benchmarks/gpu_memory.sh               # on the GPU machine
#   bash benchmarks/gpu_memory.sh --cpu-smoke   # here: gpu_configs.py's code path on CPU, toy shape
# Wheels the GPU image lacks travel in .whl/ (benchmarks/README.md, "GPU"); installed here if present.
# Knobs: GPU_CONFIGS (t4,qlora,8bit,lora16), GPU_STEPS (10), GPU_RESUME (1), GPU_TIMEOUT (420 s per command).
set -uo pipefail
cd "$(dirname "$0")/.."
. benchmarks/gpu_env.sh  # $OUT, $PY, wheels, PYTHONPATH
RESUME=--resume; [ "${GPU_RESUME:-1}" = 0 ] && RESUME=--no-resume
STATUS=0
if [ "${1:-}" = "--cpu-smoke" ]; then
  "$PY" benchmarks/gpu_configs.py --out "$OUT" --cpu-smoke --configs "${GPU_CONFIGS:-t4,qlora,8bit,lora16}" $RESUME || STATUS=1
  exit $STATUS
fi
{
  date -u '+# issue 31 memory check, %Y-%m-%d %H:%M UTC'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)"
} > "$OUT/report.md" 2>&1
"$PY" benchmarks/bench_memory.py --config configs/llama3-8b-qlora-t4.yaml --device cuda --cap-gib 14.5 \
  --json "$OUT/memory_t4.json" >> "$OUT/report.md" 2> "$OUT/memory_t4.err" || STATUS=1
"$PY" benchmarks/bench_memory.py --config configs/llama3-8b-qlora.yaml --device cuda \
  --json "$OUT/memory_qlora.json" >> "$OUT/report.md" 2> "$OUT/memory_qlora.err" || STATUS=1
"$PY" benchmarks/gpu_configs.py --out "$OUT" --configs "${GPU_CONFIGS:-t4,qlora,8bit,lora16}" --steps "${GPU_STEPS:-10}" \
  --timeout "${GPU_TIMEOUT:-420}" $RESUME >> "$OUT/report.md" 2> "$OUT/gpu_configs.err" || STATUS=1
cat "$OUT/report.md"
exit $STATUS
