#!/usr/bin/env bash
# One command for the whole benchmark suite (quick mode by default; --full for the real shape):
#   pip install -e ".[bench]"      # TRL + psutil, only needed here
#   bash benchmarks/run.sh          # prints one report, also written to benchmarks/results/quick/report.md
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/run_all.py "$@"
