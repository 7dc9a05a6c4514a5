#!/usr/bin/env bash
# GPU benchmark, prepared for one call of at most ~9 minutes on one H100/H200:
# a Llama-3-8B-shaped model with random weights (bf16, saved once to local disk). Training in bf16,
# then 4-bit (nf4) if bitsandbytes imports, one table each: ours at our best (the step's 24 rows in one
# packed micro-batch, FlexAttention block masks) vs the seed's TRL recipe (SFTTrainer + peft LoRA,
# full-sequence loss, 4 x 6) vs TRL at its best (padding-free, liger kernels if present, 24 x 1).
# Between them prediction (label-token head with predict's auto batches vs generate); then ours with
# compiled decoder layers; last, if GPU_CLI=1, the shipped QLoRA config through the CLI. Tables go to $OUT.
#
#   bash benchmarks/gpu.sh                 # on the GPU machine; $OUT must be set (else ./gpu-results)
#   bash benchmarks/gpu.sh --cpu-smoke     # here, on CPU: same code path, toy depth/width, Llama-3 vocab
#
# Packages the GPU image lacks (trl, datasets, bitsandbytes and their missing needs: dill, multiprocess)
# travel as wheels in .whl/ (see /work/.library/device/README.md); this script installs them if present.
# Knobs (environment): GPU_LAYERS (default 32 = all), GPU_STEPS (6), GPU_MICRO_BATCH (24, ours and
# trl-best), GPU_ACCUMULATE (1), GPU_TRL_MICRO_BATCH (4: the seed's 4 x 6), GPU_PACKED (1),
# GPU_LENGTH_SCALE (3, ~400-token rows), GPU_PREDICT_ROWS (300), GPU_COMPILE_TIMEOUT (240 s), GPU_CLI (0).
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
. benchmarks/gpu_env.sh  # $OUT, $PY, wheels, PYTHONPATH

if [ "$SMOKE" = 1 ]; then
  COMMON=(--shape tiny-8b-vocab --device cpu --dtype float32)
  TRAIN=(--steps 3 --micro-batch 4 --accumulate 1 --trl-micro-batch 2 --length-scale 1)
  PRED=(--rows 12 --length-scale 1)
  QUANTS=(none)
else
  COMMON=(--shape llama3-8b --device cuda --dtype bfloat16 --layers "${GPU_LAYERS:-32}")
  TRAIN=(--steps "${GPU_STEPS:-6}" --micro-batch "${GPU_MICRO_BATCH:-24}" --accumulate "${GPU_ACCUMULATE:-1}"
         --trl-micro-batch "${GPU_TRL_MICRO_BATCH:-4}" --length-scale "${GPU_LENGTH_SCALE:-3}")
  PRED=(--rows "${GPU_PREDICT_ROWS:-300}" --length-scale "${GPU_LENGTH_SCALE:-3}" --unpadded-rows 60)
  QUANTS=(none)  # bf16 first: the 10,000 tokens/s goal
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

cli_check() {
# The shipped one-GPU QLoRA config through the real CLI (fit a few steps, then predict), on the same
# saved random backbone the benchmarks use; GPU memory sampled by nvidia-smi every 0.5 s.
CLI_LOGS="${CLI_LOGS:-/tmp/mathverify-gpu-cli}"; rm -rf "$CLI_LOGS"  # checkpoints stay out of $OUT
SHAPE="${COMMON[1]}"; LAYERS=None; [ "$SMOKE" = 0 ] && LAYERS="${GPU_LAYERS:-32}"
MODEL_DIR=$("$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from common import build_backbone
print(build_backbone('$SHAPE', $LAYERS, device='$DEV', dtype='$DT'))" 2> "$OUT/cli_build.err") || STATUS=1
CLI_ARGS=(--config configs/llama3-8b-qlora.yaml --config benchmarks/gpu_cli.yaml --model.backbone "$MODEL_DIR"
          --logs_dir "$CLI_LOGS")
[ "$SMOKE" = 1 ] && CLI_ARGS+=(--trainer.accelerator cpu --trainer.precision 32-true --model.dtype float32
                               --model.max_length 512 --data.num_workers 0)
if [ "$SMOKE" = 0 ]; then
  nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/cli_gpu_memory.csv" 2>/dev/null &
  SMI=$!
fi
T0=$(date +%s)
timeout "${GPU_CLI_TIMEOUT:-300}" "$PY" -m mathverify fit "${CLI_ARGS[@]}" > "$OUT/cli_fit.log" 2>&1 || STATUS=1
T1=$(date +%s)
timeout 150 "$PY" -m mathverify predict "${CLI_ARGS[@]}" --ckpt_path gpu-cli:last --data.predict_files synthetic-test:400:7 \
  --submission "$OUT/cli_submission.csv" > "$OUT/cli_predict.log" 2>&1 || STATUS=1
T2=$(date +%s)
[ "$SMOKE" = 0 ] && kill "$SMI" 2>/dev/null
{
  echo "fit: $((T1 - T0)) s wall (start-up, 4-bit load, evidence index, 12 steps x 24 rows, validation); predict 400 rows: $((T2 - T1)) s wall"
  echo '```'; grep -E "^round |^ +[0-9]+ +[0-9]+ +[0-9]+ " "$OUT/cli_fit.log" | tail -5; tail -3 "$OUT/cli_predict.log"; echo '```'
  "$PY" - "$CLI_LOGS" <<'PYEOF' 2>/dev/null
import glob, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
for f in sorted(glob.glob(sys.argv[1] + "/gpu-cli/version_*/events.out.tfevents.*")):
    acc = EventAccumulator(f, size_guidance={"scalars": 0}); acc.Reload()
    peaks = [t for t in acc.Tags()["scalars"] if t.endswith("allocated_bytes.all.peak")]
    for t in peaks[:1]:  # one hook suffices: the peak counts from the process's start (loading included)
        print(f"peak CUDA memory allocated by torch since the process started: "
              f"{max(e.value for e in acc.Scalars(t)) / 2**30:.2f} GiB")
    # What training itself holds: allocated at each training batch's end, first step and largest.
    for t in [t for t in acc.Tags()["scalars"] if t.endswith("on_train_batch_end/allocated_bytes.all.current")]:
        values = [e.value / 2**30 for e in acc.Scalars(t)]
        print(f"allocated at the end of a training batch: first {values[0]:.2f} GiB, largest {max(values):.2f} GiB")
    for t in [t for t in acc.Tags()["scalars"] if t.startswith("train/") and "per_sec" in t][:4]:
        print(f"{t}: last {acc.Scalars(t)[-1].value:.2f}")
PYEOF
  [ -s "$OUT/cli_gpu_memory.csv" ] && awk -F', ' '$2 > m {m = $2} END {print "peak GPU memory in use (nvidia-smi, whole device):", m, "MiB"}' "$OUT/cli_gpu_memory.csv"
} >> "$OUT/report.md"
}

train() {  # ours at our best vs TRL's seed recipe vs TRL at its best, at quantization $1
  echo -e "\n## Training, quantization $1 ($(date -u +%T))\n" >> "$OUT/report.md"
  "$PY" benchmarks/bench_train.py "${COMMON[@]}" "${TRAIN[@]}" --quantization "$1" "${PACK[@]}" --attn "$ATTN" \
    --contenders ours,trl,trl-best --profile --matmul-peak-gflops "$PEAK" --json "$OUT/train_$1.json" \
    >> "$OUT/report.md" 2> "$OUT/train_$1.err" || STATUS=1
}
predict() {
  echo -e "\n## Prediction ($(date -u +%T))\n" >> "$OUT/report.md"
  "$PY" benchmarks/bench_predict.py "${COMMON[@]}" "${PRED[@]}" --json "$OUT/predict.json" \
    >> "$OUT/report.md" 2> "$OUT/predict.err" || STATUS=1
}
# FlexAttention has no CPU backward: the smoke run packs with sdpa.
ATTN=flex_attention; [ "$SMOKE" = 1 ] && ATTN=sdpa
PACK=(); [ "${GPU_PACKED:-1}" = 1 ] && PACK=(--packing)
# Order of value if the time runs out: bf16 training, prediction, 4-bit training, the CLI check.
train "${QUANTS[0]}"
predict
for Q in "${QUANTS[@]:1}"; do train "$Q"; done
# Ours with compiled decoder layers (model.compile_layers), bf16, beside the first table's ours.
echo -e "\n## Training, quantization ${QUANTS[0]}, ours with compiled layers ($(date -u +%T))\n" >> "$OUT/report.md"
timeout "${GPU_COMPILE_TIMEOUT:-240}" "$PY" benchmarks/bench_train.py "${COMMON[@]}" "${TRAIN[@]}" --quantization "${QUANTS[0]}" \
  "${PACK[@]}" --attn "$ATTN" --contenders ours-compiled --matmul-peak-gflops "$PEAK" --json "$OUT/train_compiled.json" \
  >> "$OUT/report.md" 2> "$OUT/train_compiled.err" || STATUS=1
[ "${GPU_CLI:-0}" = 1 ] || [ "$SMOKE" = 1 ] && { echo -e "\n## configs/llama3-8b-qlora.yaml through the CLI ($(date -u +%T))\n" >> "$OUT/report.md"; cli_check; }
echo -e "\n(finished $(date -u +%T))" >> "$OUT/report.md"
cat "$OUT/report.md"
exit $STATUS
