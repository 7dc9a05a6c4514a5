# Sourced by the GPU scripts (gpu.sh, gpu_memory.sh) from the repository root: $OUT, quiet and offline
# libraries, the benchmark cache, $PY, and the wheels the GPU image lacks (.whl/, installed if present).
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
