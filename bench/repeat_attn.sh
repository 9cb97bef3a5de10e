#!/usr/bin/env bash
# Repeated `cqkv bench-attn` runs on a shared, noisy machine: RUNS runs per context (each one
# interleaves its formats' rounds), then per format the median over runs of each run's ratio to
# fp16 (itself a median over rounds) and of ns/token, with the min-max range of the ratios.
#   bench/repeat_attn.sh OUT_DIR RUNS "CTX..." FORMATS [extra bench-attn flags...]
# e.g. bench/repeat_attn.sh /tmp/rep 7 "4096 16384" fp16,cq:8c8b,cq:8c8b:fs --reps 9
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1 runs=$2 ctxs=$3 formats=$4
shift 4
bin=${CQKV_BIN:-build/cqkv}
[[ -x $bin ]] || { echo "repeat_attn: $bin missing (cmake --build build --target cqkv_cli)" >&2; exit 1; }
mkdir -p "$out"
for ((r = 1; r <= runs; r++)); do
  for T in $ctxs; do
    echo "repeat_attn: run $r/$runs ctx $T ($(cut -d' ' -f1-3 /proc/loadavg) load)" >&2
    "$bin" bench-attn --ctx "$T" --batch 1 --heads 32 --kv-heads 8 --head-dim 128 \
      --formats "$formats" -t 2 --json "$out/ctx${T}_run$r.json" "$@" >/dev/null 2>&1
  done
done
python3 - "$out" $ctxs <<'PY'
import glob, json, statistics, sys
out, ctxs = sys.argv[1], sys.argv[2:]
for T in ctxs:
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/ctx{T}_run*.json"))]
    print(f"\nctx {T}: {len(runs)} runs, stream GB/s "
          f"{min(r['stream_gbps'] for r in runs):.1f}-{max(r['stream_gbps'] for r in runs):.1f}\n")
    print("| format | bits/ch | ns/token (median) | vs fp16 (median of runs) | range |")
    print("|---|---:|---:|---:|---:|")
    for i, res in enumerate(runs[0]["results"]):
        ratios = [r["results"][i]["ratio_vs_fp16"] for r in runs]
        ns = [r["results"][i]["ns_per_token"] for r in runs]
        print(f"| {res['format']} | {res['bits_per_channel']:.2f} | {statistics.median(ns):.0f} | "
              f"{statistics.median(ratios):.2f}x | {min(ratios):.2f}-{max(ratios):.2f} |")
PY
