// Where the time of one KV head's fused CQ decode attention goes (reports/attention/fused.md):
// warm, one thread, 4 query heads per KV head, head dim 128, random codes and tables, 4096
// tokens in one call as DecodeAttention issues them at B = 1 (one unit per KV head). Whole
// kernels (exact histogram, fast-scan fused histogram, additive, additive with fast-scan keys),
// then their parts: the fast-scan tables alone, the fast-scan lane scores alone (runs of 512),
// the histogram value path alone (constant lane scores); the nibble-value kernels
// (attn_cq_nibble.h: 4-bit k-means values, or residual values on 8-bit codes), whole, values only
// (constant scores) and their histogram primitive alone (fp32 and fixed-point lanes). Counter
// ns_per_token is per cached token and KV head. Args: channels per group, bits per code (4c8b,
// 8c8b, 4c4b, 8c4b).
//   cq_fused_bench [google-benchmark flags]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <vector>

#include "cq_bench_head.h"
#include "kernels/attn_cq.h"
#include "kernels/attn_cq_fastscan.h"
#include "kernels/attn_cq_nibble.h"
#include "kernels/attn_cq_values.h"

namespace {

using cqkv::bench::Head;
using cqkv::bench::kHeadDim;
using cqkv::bench::kHeads;
using cqkv::bench::kTokens;

enum class Kernel {
  kExact,
  kFastScan,
  kAdditive,
  kAdditiveFastScan,
  kTables,
  kLanes,
  kValues,
  kNibble,
  kNibbleFastScan,
  kNibbleValues,
  kNibbleSums,
  kNibbleSumsFixed,
};

void Run(benchmark::State& state, Kernel kernel) {
  Head h(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  cqkv::CqFsTables tables;
  std::vector<float> lanes((512 + 128) * 4);
  // Nibble kernels: residual values on 8-bit codes, k-means values on 4-bit codes.
  const float* residual = h.bits == 8 ? h.residual.data() : nullptr;
  std::vector<float> weights(static_cast<size_t>(kHeads) * 256, 0.5f), sums;
  const int64_t head_bytes = h.groups * h.bits / 8;
  sums.resize(static_cast<size_t>(kHeads * head_bytes * 2 * 16));
  const cqkv::CqScoreFn flat = [](int64_t, int64_t n, float* sc) {
    std::fill_n(sc, n * kHeads, 0.0f);
  };
  for (auto _ : state) {
    const cqkv::AttnState s = h.State();
    switch (kernel) {
      case Kernel::kExact:
        cqkv::CqAttend(h.view, h.q.data(), 0, kTokens, s);
        break;
      case Kernel::kFastScan:
        cqkv::CqAttendFastScan(h.view, h.q.data(), 0, kTokens, s);
        break;
      case Kernel::kAdditive:
        cqkv::CqAttendAdditive(h.view, h.basis.data(), h.q.data(), 0, kTokens, s);
        break;
      case Kernel::kAdditiveFastScan:
        cqkv::CqAttendAdditiveFastScan(h.view, h.basis.data(), h.q.data(), 0, kTokens, s);
        break;
      case Kernel::kTables:
        cqkv::CqFsBuildTables(h.view, h.q.data(), kHeads, kHeadDim, &tables);
        break;
      case Kernel::kLanes:
        cqkv::CqFsBuildTables(h.view, h.q.data(), kHeads, kHeadDim, &tables);
        for (int64_t b = 0; b < kTokens; b += 512)
          cqkv::CqFsLaneScores(h.view, tables, b, 512, 4, lanes.data());
        break;
      case Kernel::kValues:
        cqkv::CqAttendLanes(
            h.view, h.q.data(), 0, kTokens, s,
            [](int64_t, int64_t n, int hp, float* out) { std::fill_n(out, n * hp, 0.0f); });
        break;
      case Kernel::kNibble:
        cqkv::CqAttendNibble(h.view, residual, h.q.data(), 0, kTokens, s);
        break;
      case Kernel::kNibbleFastScan:
        cqkv::CqAttendNibbleFastScan(h.view, residual, h.q.data(), 0, kTokens, s);
        break;
      case Kernel::kNibbleValues:
        cqkv::CqAttendNibble(h.view, residual, h.q.data(), 0, kTokens, s, flat);
        break;
      case Kernel::kNibbleSums:
      case Kernel::kNibbleSumsFixed:
        for (int64_t b = 0; b < kTokens; b += 256) {
          (kernel == Kernel::kNibbleSums ? cqkv::NibbleSums : cqkv::NibbleSumsFixed)(
              h.v_codes.data() + b * head_bytes, head_bytes, head_bytes, 256, weights.data(), 256,
              kHeads, sums.data());
        }
        benchmark::DoNotOptimize(sums.data());
        break;
    }
    benchmark::DoNotOptimize(h.acc.data());
    benchmark::DoNotOptimize(lanes.data());
  }
  state.counters["ns_per_token"] = benchmark::Counter(
      static_cast<double>(kTokens) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_Exact(benchmark::State& s) { Run(s, Kernel::kExact); }
void BM_FastScanFused(benchmark::State& s) { Run(s, Kernel::kFastScan); }
void BM_Additive(benchmark::State& s) { Run(s, Kernel::kAdditive); }
void BM_AdditiveFastScan(benchmark::State& s) { Run(s, Kernel::kAdditiveFastScan); }
void BM_FsTablesOnly(benchmark::State& s) { Run(s, Kernel::kTables); }
void BM_FsLaneScoresOnly(benchmark::State& s) { Run(s, Kernel::kLanes); }
void BM_HistogramValuesOnly(benchmark::State& s) { Run(s, Kernel::kValues); }

void BM_Nibble(benchmark::State& s) { Run(s, Kernel::kNibble); }
void BM_NibbleFastScan(benchmark::State& s) { Run(s, Kernel::kNibbleFastScan); }
void BM_NibbleValuesOnly(benchmark::State& s) { Run(s, Kernel::kNibbleValues); }
void BM_NibbleSumsOnly(benchmark::State& s) { Run(s, Kernel::kNibbleSums); }
void BM_NibbleSumsFixedOnly(benchmark::State& s) { Run(s, Kernel::kNibbleSumsFixed); }

void Configs(benchmark::internal::Benchmark* b) {
  for (auto [c, bits] : {std::pair{4, 8}, {8, 8}, {4, 4}, {8, 4}, {2, 4}}) b->Args({c, bits});
}
BENCHMARK(BM_Exact)->Apply(Configs);
BENCHMARK(BM_FastScanFused)->Apply(Configs);
BENCHMARK(BM_HistogramValuesOnly)->Apply(Configs);
BENCHMARK(BM_FsLaneScoresOnly)->Apply(Configs);
BENCHMARK(BM_FsTablesOnly)->Apply(Configs);
// Nibble values: 4c4b, 2c4b, 8c4b (k-means, 4-bit), 8c8b and 4c8b (residual, 8-bit).
void NibbleConfigs(benchmark::internal::Benchmark* b) {
  for (auto [c, bits] : {std::pair{4, 4}, {2, 4}, {8, 4}, {8, 8}, {4, 8}}) b->Args({c, bits});
}
BENCHMARK(BM_Nibble)->Apply(NibbleConfigs);
BENCHMARK(BM_NibbleFastScan)->Apply(NibbleConfigs);
BENCHMARK(BM_NibbleValuesOnly)->Apply(NibbleConfigs);
BENCHMARK(BM_NibbleSumsOnly)->Apply(NibbleConfigs);
BENCHMARK(BM_NibbleSumsFixedOnly)->Apply(NibbleConfigs);
BENCHMARK(BM_Additive)->Args({4, 8})->Args({8, 8});
BENCHMARK(BM_AdditiveFastScan)->Args({4, 8})->Args({8, 8});

}  // namespace

BENCHMARK_MAIN();
