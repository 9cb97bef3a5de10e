#!/usr/bin/env bash
# End-to-end decode report: runs build/decode_bench --full one case per process, so each case's
# peak RSS is its own, and collects the JSON of every case into one file.
#   bench/decode_report.sh [OUT.json] [FILTER-REGEX]
# Default output reports/attention/decode_bench_full.json; FILTER narrows the cases (e.g.
# 'cq-tiny'). Cases whose caches exceed decode_bench's --max-gib are skipped by it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports/attention/decode_bench_full.json}
filter=${2:-.}
bin=build/decode_bench
[[ -x $bin ]] || { echo "decode_report: $bin missing (cmake --build build)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mapfile -t cases < <("$bin" --full --benchmark_list_tests 2>/dev/null | grep -E "$filter" || true)
[[ ${#cases[@]} -gt 0 ]] || { echo "decode_report: no case matches '$filter'" >&2; exit 1; }
i=0
for c in "${cases[@]}"; do
  i=$((i + 1))
  echo "decode_report: [$i/${#cases[@]}] $c" >&2
  # Regex-escape the case name: it contains '/', ':' and '.'.
  pat=$(printf '%s' "$c" | sed 's/[][\.*^$+?(){}|]/\\&/g')
  "$bin" --full --benchmark_filter="^${pat}\$" --benchmark_out="$tmp/$i.json" \
    --benchmark_out_format=json >/dev/null 2>"$tmp/$i.err" ||
    { echo "decode_report: $c failed:" >&2; cat "$tmp/$i.err" >&2; exit 1; }
done
/usr/bin/python3 - "$out" "$tmp" <<'PY'
import json, os, sys
out, tmp = sys.argv[1], sys.argv[2]
runs, context = [], None
for name in sorted(os.listdir(tmp), key=lambda n: int(n.split('.')[0]) if n.endswith('.json') else 0):
    if name.endswith('.json'):
        d = json.load(open(os.path.join(tmp, name)))
        context = context or d['context']
        runs += d['benchmarks']
os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
json.dump({'context': context, 'benchmarks': runs}, open(out + '.tmp', 'w'), indent=1)
os.replace(out + '.tmp', out)
print(f'decode_report: {len(runs)} cases -> {out}', file=sys.stderr)
PY
