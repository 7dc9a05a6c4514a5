#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the wheels the GPU machine's image lacks, for Python 3.12 on
# x86-64: what the CLI and the benchmarks need there (bitsandbytes, datasets, jsonargparse and the two
# packages its signatures need, trl, math-verify and theirs) and liger-kernel (TRL's kernels in
# bench_train's trl-best). benchmarks/gpu_env.sh installs whatever lies in .whl/ when gpu.sh or
# gpu_memory.sh starts; name .whl in the device call's `carry`.
#
#   bash benchmarks/gpu_wheels.sh                          # ~52 MB (bitsandbytes alone is 43 MB)
#   bash benchmarks/gpu_wheels.sh --transformers --no-4bit # this checkout's transformers instead of bitsandbytes
#
# --transformers adds this checkout's transformers (14 MB; the image's 5.17 lacks the decoder's `cache=`
# keyword, so the padded path's shared prefix does not run there). It imports and runs a Llama without
# its new `kernels` and `typer` requirements (checked here), but whether the image's huggingface-hub and
# tokenizers suit it is not known until it runs there. Everything that travels (tracked files, ~9 MB,
# plus .whl) must stay under 64 MiB: with both bitsandbytes and transformers it does not, so pick one
# (--no-4bit leaves bitsandbytes out; gpu.sh then skips the 4-bit table by itself).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WHEELS=(datasets==5.2.0 jsonargparse==4.53.0 docstring-parser typeshed-client trl==1.16.0 dill multiprocess
        math-verify latex2sympy2_extended antlr4-python3-runtime==4.13.2 zstandard liger-kernel)
for arg in "$@"; do
  case "$arg" in
    --transformers) WHEELS+=("transformers==$("$PY" -c "import transformers; print(transformers.__version__)")") ;;
    --no-4bit) NO_4BIT=1 ;;
    *) echo "gpu_wheels.sh: unknown argument $arg (use --transformers, --no-4bit)" >&2; exit 2 ;;
  esac
done
[ "${NO_4BIT:-0}" = 1 ] || WHEELS+=(bitsandbytes==0.50.2)
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "${WHEELS[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
WHEEL_BYTES=$(du -sb .whl | cut -f1)
TRACKED=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
TOTAL=$((WHEEL_BYTES + TRACKED))
echo "$(ls .whl | wc -l) wheels, $((WHEEL_BYTES / 1048576)) MiB; with the tracked files $((TOTAL / 1048576)) MiB of the 64 MiB that may travel"
[ "$TOTAL" -lt $((64 * 1048576)) ] || { echo "too large to travel: drop --transformers or add --no-4bit" >&2; exit 1; }
