#!/usr/bin/env bash
# Runs every libFuzzer target of a CQKV_FUZZ=ON build for SECONDS each on its corpus
# (BUILD/fuzz-corpus/<target>, seeded by fuzz/make_corpus.py on first use and grown by each run).
# Findings go to BUILD/fuzz-findings/; prints one line per target (execs/s, coverage, corpus) and
# exits 1 when any target found something.
#   scripts/fuzz.sh BUILD SHARED SECONDS [TARGET...]
set -uo pipefail
build=${1:?usage: fuzz.sh BUILD SHARED SECONDS [TARGET...]}
shared=${2:?shared folder}
seconds=${3:?seconds per target}
shift 3
root="$(cd "$(dirname "$0")/.." && pwd)"
corpus="$build/fuzz-corpus"
findings="$build/fuzz-findings"
logs="$build/fuzz-logs"
mkdir -p "$findings" "$logs"
if [ ! -d "$corpus" ]; then
  python3 "$root/fuzz/make_corpus.py" --shared "$shared" --out "$corpus" --cqkv "$build/cqkv" ||
    { echo "fuzz: cannot write the seed corpus" >&2; exit 1; }
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$root"/fuzz/targets/*_fuzz.cc; do
    n=$(basename "$f" _fuzz.cc)
    targets+=("$n")
  done
fi
# Leaks are findings; a single input may take 10 s and 2 GiB (a reader's allocation must follow
# the input's size, not what the input claims).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  bin="$build/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz: $bin not built" >&2; status=1; continue; }
  mkdir -p "$corpus/$t"
  log="$logs/$t.log"
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$findings/$t-" "$corpus/$t" >"$log" 2>&1
  rc=$?
  # The last status line ("#N DONE cov: C ft: F corp: K/S exec/s: E ...") and the final stats.
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/p' <<<"$last")
  if [ $rc -eq 0 ]; then verdict=ok; else verdict="FINDING (rc $rc, see $log)"; status=1; fi
  printf 'fuzz %-15s %6ss  execs %-9s exec/s %-6s cov %-5s ft %-6s corpus %-10s %s\n' \
    "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$verdict"
done
exit $status
