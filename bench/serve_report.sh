#!/usr/bin/env bash
# Serving capacity and throughput at fixed KV budgets (cqkv bench-serve), the grid of
# reports/serving/: cq-tiny at 4K and 16K context, a 2-layer 7B-shaped model (32 query / 8 KV
# heads, head dim 128) at 16K and 32K, and a batch of 8 against one-after-another decoding on the
# 7B shape with F16 weights. Writes one JSON per case and the tables to reports/serving/.
#   bench/serve_report.sh [BUILD_DIR] [SHARED_DIR] [THREADS]
set -euo pipefail
build=${1:-build} shared=${2:-../shared} threads=${3:-2}
out=reports/serving
mkdir -p "$out"
formats=fp16,int4-channel,cq:4c8b,cq:8c8b
tiny=$shared/models/cq-tiny/model.bin
md=$out/tables.md
: >"$md"
run() {  # name, then bench-serve arguments
  local name=$1
  shift
  echo "== $name" >&2
  {
    echo "### $name"
    echo
    echo '```'
    echo "cqkv bench-serve $* -t $threads"
    echo '```'
    "$build/cqkv" bench-serve "$@" -t "$threads" --json "$out/$name.json"
    echo
  } >>"$md"
}
for mem in 64MiB 256MiB 1GiB; do
  run "cq-tiny_ctx4096_$mem" -m "$tiny" --ctx 4096 --kv-memory "$mem" --formats "$formats" --gen 8
done
for mem in 256MiB 1GiB; do
  run "cq-tiny_ctx16384_$mem" -m "$tiny" --ctx 16384 --kv-memory "$mem" --formats "$formats" --gen 8
done
run "7b2l_ctx16384_1GiB" --synthetic 7b --layers 2 --ctx 16384 --kv-memory 1GiB --formats "$formats" --gen 6
for mem in 1GiB 2GiB; do
  run "7b2l_ctx32768_$mem" --synthetic 7b --layers 2 --ctx 32768 --kv-memory "$mem" --formats "$formats" --gen 6
done
run "7b2l-f16_ctx4096_batch8" --synthetic 7b --layers 2 --weights f16 --ctx 4096 --kv-memory 256MiB \
  --max-seqs 8 --sequential --formats fp16,cq:4c8b,cq:8c8b --gen 6
# Debian's python3-matplotlib lives with the system interpreter.
/usr/bin/python3 eval/plot_serving.py "$out"
