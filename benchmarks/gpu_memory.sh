#!/usr/bin/env bash
# The memory check of issue 31 on one GPU (H100/H200), results in $OUT:
#   1. bench_memory.py on the T4 config at its full 1,024-token rows with the allocator capped at
#      14.5 GiB (what a T4 leaves), beside its CPU-counted prediction (GPU_MEMORY=0 skips it);
#   2. gpu_configs.py: shipped GPU configs through `mathverify fit` (GPU_STEPS, default 10) and
#      `predict` on rows that fill max_length, then a kill -9 resume on CUDA (GPU_RESUME=0 skips it).
# Planned as two calls of under ~10 minutes each (estimates: building the 16 GB random backbone
# ~2 min once per machine, a config's fit ~2-4 min at full-length rows, the resume ~1.5 min):
#   bash benchmarks/gpu_memory.sh                                              # T4 memory; t4, qlora; resume
#   GPU_MEMORY=0 GPU_RESUME=0 GPU_CONFIGS=8bit,lora16 bash benchmarks/gpu_memory.sh   # the other two
#   bash benchmarks/gpu_memory.sh --cpu-smoke   # here: gpu_configs.py's code path on CPU, toy shape
# Wheels the GPU image lacks travel in .whl/ (benchmarks/README.md, "GPU"); installed if present.
# Knobs: GPU_CONFIGS (t4,qlora), GPU_STEPS (10), GPU_RESUME (1), GPU_MEMORY (1), GPU_TIMEOUT (420 s per command).
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
if [ "${GPU_MEMORY:-1}" = 1 ]; then
  "$PY" benchmarks/bench_memory.py --config configs/llama3-8b-qlora-t4.yaml --device cuda --cap-gib 14.5 \
    --json "$OUT/memory_t4.json" >> "$OUT/report.md" 2> "$OUT/memory_t4.err" || STATUS=1
fi
"$PY" benchmarks/gpu_configs.py --out "$OUT" --configs "${GPU_CONFIGS:-t4,qlora}" --steps "${GPU_STEPS:-10}" \
  --timeout "${GPU_TIMEOUT:-420}" $RESUME >> "$OUT/report.md" 2> "$OUT/gpu_configs.err" || STATUS=1
cat "$OUT/report.md"
exit $STATUS
