// One KV head's decode attention with additive values (kernels/attn_cq_values.h) against the
// histogram kernel (kernels/attn_cq.h), warm, one thread, 4 query heads per KV head, head dim 128,
// 8-bit codes, random tables and codes: whole kernel with key tables, values alone (a constant
// score callback replaces key scoring in both), and the masked-add bit sums alone. Counter
// ns_per_token is per cached token and KV head (see reports/attention/additive_values.md).
//   additive_values_bench [google-benchmark flags]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <vector>

#include "cq_bench_head.h"
#include "kernels/attn_cq.h"
#include "kernels/attn_cq_values.h"

namespace {

using cqkv::bench::Head;
using cqkv::bench::kHeadDim;
using cqkv::bench::kHeads;
using cqkv::bench::kTokens;
constexpr int kBits = 8;

void Run(benchmark::State& state, bool additive, bool values_only) {
  Head h(static_cast<int>(state.range(0)), kBits);
  const cqkv::CqScoreFn zero = [](int64_t, int64_t n, float* sc) {
    std::fill_n(sc, kHeads * n, 0.0f);
  };
  for (auto _ : state) {
    const cqkv::AttnState s = h.State();
    const cqkv::CqScoreFn& score = values_only ? zero : cqkv::CqScoreFn();
    if (additive) {
      cqkv::CqAttendAdditive(h.view, h.basis.data(), h.q.data(), 0, kTokens, s, score);
    } else {
      cqkv::CqAttend(h.view, h.q.data(), 0, kTokens, s, score);
    }
    benchmark::DoNotOptimize(h.acc.data());
  }
  state.counters["ns_per_token"] = benchmark::Counter(
      static_cast<double>(kTokens) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_Histogram(benchmark::State& s) { Run(s, false, false); }
void BM_Additive(benchmark::State& s) { Run(s, true, false); }
void BM_HistogramValuesOnly(benchmark::State& s) { Run(s, false, true); }
void BM_AdditiveValuesOnly(benchmark::State& s) { Run(s, true, true); }

void BM_BitSums(benchmark::State& state) {
  Head h(static_cast<int>(state.range(0)), kBits);
  const int64_t row_bytes = h.groups * kBits / 8;
  std::vector<float> p(kHeads * 256, 0.5f), sums(kHeads * row_bytes * 8);
  for (auto _ : state) {
    for (int64_t b = 0; b < kTokens; b += 256) {
      cqkv::AdditiveBitSums(h.v_codes.data() + b * row_bytes, row_bytes, row_bytes, 256, p.data(),
                            256, kHeads, sums.data());
    }
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["ns_per_token"] = benchmark::Counter(
      static_cast<double>(kTokens) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// Arg: channels per group (4 = CQ-4c8b, 2 bits per channel; 8 = CQ-8c8b, 1 bit).
BENCHMARK(BM_Histogram)->Arg(4)->Arg(8);
BENCHMARK(BM_Additive)->Arg(4)->Arg(8);
BENCHMARK(BM_HistogramValuesOnly)->Arg(4)->Arg(8);
BENCHMARK(BM_AdditiveValuesOnly)->Arg(4)->Arg(8);
BENCHMARK(BM_BitSums)->Arg(4)->Arg(8);

}  // namespace

BENCHMARK_MAIN();
