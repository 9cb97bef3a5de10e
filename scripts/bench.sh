#!/usr/bin/env bash
# `make bench`: forward-pass throughput with its bounds, JSON beside the console table.
set -euo pipefail
BUILD=${1:-build}
SHARED=${2:-../shared}
THREADS=${THREADS:-2}
mkdir -p reports
"$BUILD/forward_bench" --threads "$THREADS" --shared "$SHARED" --benchmark_min_time=2 \
  --benchmark_out=reports/forward_bench.json --benchmark_out_format=json
